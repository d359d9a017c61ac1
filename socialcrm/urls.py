"""Root URLs. The one file of `socialcrm/` that imports the apps."""

from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from socialcrm.api.errors import api_not_found, api_server_error


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers and docker-compose health checks."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def ping(request: HttpRequest) -> HttpResponse:
    """The cheapest answer the server can give: the baseline webhook and API benchmarks compare against."""
    return HttpResponse(b"ok", content_type="text/plain")


# Every app's API routes under one versioned root; each app's `api/urls.py` has its own namespace.
api_v1 = [
    path("", include("contacts.api.urls")),
    path("", include("conversations.api.urls")),
    path("", include("channels.api.urls")),
    path("", include("hooks.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("ping/", ping, name="ping"),
    path("healthz/", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("webhooks/", include("channels.urls")),
    path("api/v1/", include(api_v1)),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("console.urls")),
]


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The API's error shape under /api/, Django's page elsewhere."""
    return api_not_found(request, exception) or defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    """The API's error shape under /api/, Django's page elsewhere."""
    return api_server_error(request) or defaults.server_error(request)
