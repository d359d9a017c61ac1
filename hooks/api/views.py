"""Webhook subscriptions and their delivery log under /api/v1/ (scope `admin`, unrestricted users only)."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from access.permissions import require_unrestricted
from hooks.models import OutboundEvent, WebhookSubscription
from hooks.services import delivery_replay, subscription_create, subscription_delete, subscription_update
from socialcrm.api.views import ApiGenericViewSet
from socialcrm.errors import NotFound

from .serializers import (
    OutboundEventSerializer,
    WebhookSubscriptionCreateInputSerializer,
    WebhookSubscriptionSerializer,
    WebhookSubscriptionUpdateInputSerializer,
)

SUBSCRIPTION_PK = OpenApiParameter("subscription_pk", OpenApiTypes.INT, OpenApiParameter.PATH,
                                   description="The webhook subscription's id.")


class _AdminOnly(ApiGenericViewSet):
    read_scope = "admin"
    write_scope = "admin"

    def initial(self, request: Request, *args: object, **kwargs: object) -> None:
        super().initial(request, *args, **kwargs)
        require_unrestricted(request)


@extend_schema_view(
    list=extend_schema(summary="List webhook subscriptions"),
    retrieve=extend_schema(summary="Get a webhook subscription"),
    create=extend_schema(summary="Subscribe a URL to events", request=WebhookSubscriptionCreateInputSerializer,
                         responses={201: WebhookSubscriptionSerializer}),
    partial_update=extend_schema(summary="Change a webhook subscription",
                                 request=WebhookSubscriptionUpdateInputSerializer,
                                 responses={200: WebhookSubscriptionSerializer}),
    destroy=extend_schema(summary="Delete a webhook subscription and its delivery log"),
)
class WebhookSubscriptionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _AdminOnly):
    """Outbound webhook subscriptions. `secret` can be written, never read."""

    serializer_class = WebhookSubscriptionSerializer
    queryset = WebhookSubscription.objects.order_by("-id")

    def _get(self, pk: str) -> WebhookSubscription:
        sub = WebhookSubscription.objects.filter(pk=int(pk)).first()
        if sub is None:
            raise NotFound("No such webhook subscription.", code="not_found")
        return sub

    def create(self, request: Request) -> Response:
        data = WebhookSubscriptionCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sub = subscription_create(**data.validated_data, created_by=request.user)
        return Response(WebhookSubscriptionSerializer(sub).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        sub = self._get(pk)
        data = WebhookSubscriptionUpdateInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        sub = subscription_update(subscription_id=sub.pk, changes=dict(data.validated_data))
        return Response(WebhookSubscriptionSerializer(sub).data)

    def destroy(self, request: Request, pk: str) -> Response:
        subscription_delete(subscription_id=self._get(pk).pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary="List a subscription's deliveries", parameters=[SUBSCRIPTION_PK]),
    retrieve=extend_schema(summary="Get a delivery", parameters=[SUBSCRIPTION_PK]),
)
class OutboundEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _AdminOnly):
    """The delivery log of one subscription (newest first), with status codes, and replay."""

    serializer_class = OutboundEventSerializer

    def get_queryset(self) -> QuerySet[OutboundEvent]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return OutboundEvent.objects.none()
        sub_id = int(self.kwargs["subscription_pk"])
        if not WebhookSubscription.objects.filter(pk=sub_id).exists():
            raise NotFound("No such webhook subscription.", code="not_found")
        return OutboundEvent.objects.filter(subscription_id=sub_id)

    @extend_schema(summary="Send a delivery again", parameters=[SUBSCRIPTION_PK], request=None,
                   responses={202: OutboundEventSerializer})
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, subscription_pk: str, pk: str) -> Response:
        row = delivery_replay(delivery_id=int(pk), subscription_id=int(subscription_pk))
        return Response(OutboundEventSerializer(row).data, status=status.HTTP_202_ACCEPTED)
