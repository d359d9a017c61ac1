"""Webhook routes in Django: `GET /webhooks/<platform>/<channel account id>/` answers the platforms' handshakes;
a POST is a delivery, handled by `channels.intake.receive` (in production the WSGI entry hands POSTs to it
before Django; the test client and `runserver`'s other servers come through here)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .adapters.base import SignatureError, WebhookRequest
from .intake import Answer, account_and_adapter, error, headers_from_environ, receive, unknown_channel


def _response(answer: Answer) -> HttpResponse:
    return HttpResponse(answer.body, status=answer.status, content_type="application/json")


@csrf_exempt
@require_http_methods(["GET", "POST"])
def webhook(request: HttpRequest, platform: str, account_id: int) -> HttpResponse:
    headers = headers_from_environ(request.META)
    if request.method == "POST":
        return _response(receive(platform=platform, account_id=account_id, headers=headers,
                                 query=request.GET.dict(), read_body=lambda: request.body))
    found = account_and_adapter(platform, account_id)
    if found is None:
        return _response(unknown_channel(platform, account_id))
    try:
        answer = found[1].handshake(WebhookRequest(method="GET", headers=headers, query=request.GET.dict(), body=b""))
    except SignatureError as exc:
        return _response(error(403, "handshake_refused", str(exc)))
    if answer is None:
        return _response(error(400, "not_a_handshake", "A GET here must be the platform's verification request."))
    return HttpResponse(answer.body, status=answer.status, content_type=answer.content_type)
