"""Reads behind the channel health page: per visible channel account its sync state, backlog and failed deliveries.

Three queries whatever the number of accounts and deliveries:

- the accounts (`channels.api.selectors.channel_account_list_for_user`: only the user's, secrets not loaded);
- the backlog, pending webhook deliveries counted per account in one grouped query (the partial index
  `delivery_pending_idx` holds only pending rows);
- the latest failed deliveries of every account: one LATERAL index scan per account over the partial index
  `delivery_failed_idx` (account, received_at DESC, id DESC, failed rows only), stopping after
  `FAILED_PER_ACCOUNT` rows. Bodies and headers are never read
  (headers can carry a platform's shared secret).
"""

from __future__ import annotations

import dataclasses

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count

from channels.api.selectors import channel_account_list_for_user
from channels.models import ChannelAccount, WebhookDelivery

User = AbstractBaseUser | AnonymousUser

FAILED_PER_ACCOUNT = 20
REPLAY_PERMISSION = "channels.change_channelaccount"

_FAILED_SQL = f"""
SELECT d.id, d.channel_account_id, d.received_at, d.state, d.attempts, d.last_error, d.processed_at
FROM unnest(%(accounts)s::bigint[]) AS a(id)
CROSS JOIN LATERAL (
    SELECT id, channel_account_id, received_at, state, attempts, last_error, processed_at
    FROM {WebhookDelivery._meta.db_table} x
    WHERE x.channel_account_id = a.id AND x.state = %(failed)s
    ORDER BY x.received_at DESC, x.id DESC
    LIMIT %(limit)s
) d
ORDER BY d.channel_account_id, d.received_at DESC, d.id DESC
"""


@dataclasses.dataclass(slots=True)
class AccountHealth:
    account: ChannelAccount
    backlog: int
    failed: list[WebhookDelivery]

    @property
    def failed_capped(self) -> bool:
        """Whether there may be more failed deliveries than listed."""
        return len(self.failed) >= FAILED_PER_ACCOUNT


def may_replay(user: User) -> bool:
    """Replaying deliveries is an administrator's action (the API's `admin` scope)."""
    return bool(user.is_authenticated and (user.is_superuser or user.has_perm(REPLAY_PERMISSION)))


def channel_health(*, user: User) -> list[AccountHealth]:
    """Every channel account `user` sees, by platform and name, with its backlog and latest failed deliveries."""
    accounts = list(channel_account_list_for_user(user=user).order_by("platform", "name", "pk"))
    if not accounts:
        return []
    ids = [a.pk for a in accounts]
    backlog = dict(WebhookDelivery.objects.filter(channel_account_id__in=ids, state=WebhookDelivery.State.PENDING)
                   .values("channel_account_id").annotate(n=Count("id")).values_list("channel_account_id", "n")
                   .order_by())
    failed: dict[int, list[WebhookDelivery]] = {pk: [] for pk in ids}
    for delivery in WebhookDelivery.objects.raw(_FAILED_SQL, {"accounts": ids, "failed": WebhookDelivery.State.FAILED,
                                                              "limit": FAILED_PER_ACCOUNT}):
        failed[delivery.channel_account_id].append(delivery)
    return [AccountHealth(account=a, backlog=backlog.get(a.pk, 0), failed=failed[a.pk]) for a in accounts]
