"""The console's pages under `/`, namespace `console`. Each area of `console/views/` lists its own routes."""

from __future__ import annotations

from .views import auth, avatars, conversations, customers, health, inbox, search

app_name = "console"

urlpatterns = [
    *auth.urlpatterns,
    *inbox.urlpatterns,
    *conversations.urlpatterns,
    *customers.urlpatterns,
    *search.urlpatterns,
    *health.urlpatterns,
    *avatars.urlpatterns,
]
