"""Reads behind the channels API, scoped to the channel accounts the requesting user may see."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.db.models.functions import Length

from access.selectors import channel_scope_for_user
from channels.models import ChannelAccount, WebhookDelivery
from socialcrm.errors import NotFound

User = AbstractBaseUser | AnonymousUser


def channel_account_list_for_user(*, user: User) -> QuerySet[ChannelAccount]:
    """Channel accounts `user` may see; the secrets are not loaded, only whether they are set."""
    queryset = ChannelAccount.objects.defer("credentials", "webhook_secret").annotate(
        has_credentials=ExpressionWrapper(Q(credentials__isnull=False), output_field=BooleanField()),
        has_webhook_secret=ExpressionWrapper(Q(webhook_secret__isnull=False), output_field=BooleanField()),
    )
    return channel_scope_for_user(user).limit(queryset, "pk")


def channel_account_get_for_user(*, user: User, account_id: int) -> ChannelAccount:
    """A channel account `user` may see; NotFound (a 404) for any other id."""
    account = channel_account_list_for_user(user=user).filter(pk=account_id).first()
    if account is None:
        raise NotFound("No such channel account.", code="not_found")
    return account


def delivery_list_for_user(*, user: User) -> QuerySet[WebhookDelivery]:
    """Webhook deliveries to the channel accounts `user` may see. Bodies and headers are not loaded (headers
    can carry a platform's shared secret); `body_size` says how big the body is."""
    queryset = WebhookDelivery.objects.defer("body", "headers").annotate(body_size=Length("body"))
    return channel_scope_for_user(user).limit(queryset)


def delivery_get_for_user(*, user: User, delivery_id: int) -> WebhookDelivery:
    """A webhook delivery `user` may see; NotFound (a 404) for any other id."""
    delivery = delivery_list_for_user(user=user).filter(pk=delivery_id).first()
    if delivery is None:
        raise NotFound("No such webhook delivery.", code="not_found")
    return delivery
