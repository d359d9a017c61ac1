"""Root URLs. The one file of `socialcrm/` that imports the apps."""

from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers and docker-compose health checks."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def ping(request: HttpRequest) -> HttpResponse:
    """The cheapest answer the server can give: the baseline webhook and API benchmarks compare against."""
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [
    path("ping/", ping, name="ping"),
    path("healthz/", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("webhooks/", include("channels.urls")),
]
