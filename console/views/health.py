"""The console's channel health page: per channel account the last sync, errors, pause, backlog and failed
webhook deliveries, with replay.

Everyone sees the accounts of their teams (all accounts with `access.view_all_channels`); replaying is an
administrator's action, as in the API (`admin` scope): users with `channels.change_channelaccount` (the "Admins"
group) or superusers. Others see the page read-only. A delivery or account outside the user's view answers 404.
Replaying is always safe: ingest is idempotent (`channels.services.deliveries_replay`).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from channels.api.selectors import channel_account_get_for_user, delivery_get_for_user
from channels.services import deliveries_replay
from socialcrm.errors import NotFound

from ..selectors.customers import MAX_ID, Forbidden
from ..selectors.health import FAILED_PER_ACCOUNT, channel_health, may_replay
from .customers import service_errors


def _require_replay_permission(request: HttpRequest) -> None:
    if not may_replay(request.user):
        raise Forbidden(_("Only administrators may replay webhook deliveries."), code="permission_denied")


@require_GET
@login_required
def channel_health_view(request: HttpRequest) -> HttpResponse:
    return render(request, "console/health.html", {
        "nav": "health", "accounts": channel_health(user=request.user), "can_replay": may_replay(request.user),
        "failed_limit": FAILED_PER_ACCOUNT,
    })


@require_POST
@login_required
@service_errors
def delivery_replay(request: HttpRequest, delivery_id: int) -> HttpResponse:
    """Put one delivery back in the queue (failed or processed: ingest stores nothing twice)."""
    if not 0 < delivery_id <= MAX_ID:
        raise NotFound(_("No such webhook delivery."), code="not_found")
    delivery = delivery_get_for_user(user=request.user, delivery_id=delivery_id)
    _require_replay_permission(request)
    deliveries_replay(delivery_ids=[delivery.pk], include_processed=True)
    messages.success(request, _("Delivery no. %(id)s is queued again.") % {"id": delivery.pk})
    return redirect("console:channel-health")


@require_POST
@login_required
@service_errors
def account_replay_failed(request: HttpRequest, account_id: int) -> HttpResponse:
    """Put every failed delivery of one channel account back in the queue."""
    if not 0 < account_id <= MAX_ID:
        raise NotFound(_("No such channel account."), code="not_found")
    account = channel_account_get_for_user(user=request.user, account_id=account_id)
    _require_replay_permission(request)
    queued = deliveries_replay(account_id=account.pk)
    messages.success(request, ngettext("%(n)d failed delivery is queued again.",
                                       "%(n)d failed deliveries are queued again.", queued) % {"n": queued})
    return redirect("console:channel-health")


urlpatterns = [
    path("channels/health/", channel_health_view, name="channel-health"),
    path("channels/health/deliveries/<int:delivery_id>/replay/", delivery_replay, name="delivery-replay"),
    path("channels/health/accounts/<int:account_id>/replay/", account_replay_failed, name="account-replay-failed"),
]
