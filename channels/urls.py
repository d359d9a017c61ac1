"""Webhook intake routes (the REST API lives in channels/api/)."""

from django.urls import path

from . import views

app_name = "channels"

urlpatterns = [
    path("<slug:platform>/<int:account_id>/", views.webhook, name="webhook"),
]
