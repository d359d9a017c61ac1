"""Channel accounts, webhook deliveries, replies and reply retries under /api/v1/.

Channel accounts and deliveries are read with the `read` scope and changed with `admin`; their secrets are
write-only. Replies need `write`. Everything is scoped to the caller's teams (404 outside them); creating a
channel account needs a caller who sees every account, since a new account belongs to no team yet.
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from access.permissions import require_unrestricted
from access.selectors import channel_scope_for_user
from channels.models import ChannelAccount, WebhookDelivery
from channels.services import deliveries_replay, reply_queue, reply_retry
from conversations.api.serializers import InteractionSerializer
from conversations.selectors import conversation_get_for_user, interaction_get_for_user
from socialcrm.api.views import ApiGenericViewSet
from socialcrm.errors import NotFound

from .filters import ChannelAccountFilterSet, WebhookDeliveryFilterSet
from .selectors import (
    channel_account_get_for_user,
    channel_account_list_for_user,
    delivery_get_for_user,
    delivery_list_for_user,
)
from .serializers import (
    ChannelAccountCreateInputSerializer,
    ChannelAccountSerializer,
    ChannelAccountUpdateInputSerializer,
    ReplayResultSerializer,
    ReplyCreateInputSerializer,
    WebhookDeliveryReplayInputSerializer,
    WebhookDeliverySerializer,
)
from .services import channel_account_create, channel_account_delete, channel_account_update

CONVERSATION_PK = OpenApiParameter("conversation_pk", OpenApiTypes.INT, OpenApiParameter.PATH,
                                   description="The conversation's id.")
INTERACTION_PK = OpenApiParameter("interaction_pk", OpenApiTypes.INT, OpenApiParameter.PATH,
                                  description="The id of the reply (an outbound interaction).")


@extend_schema_view(
    list=extend_schema(summary="List channel accounts"),
    retrieve=extend_schema(summary="Get a channel account"),
    create=extend_schema(summary="Create a channel account", request=ChannelAccountCreateInputSerializer,
                         responses={201: ChannelAccountSerializer}),
    partial_update=extend_schema(summary="Change a channel account", request=ChannelAccountUpdateInputSerializer,
                                 responses={200: ChannelAccountSerializer}),
    destroy=extend_schema(summary="Delete a channel account without history"),
)
class ChannelAccountViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiGenericViewSet):
    """The brand accounts on each platform. `credentials` and `webhook_secret` can be written, never read."""

    serializer_class = ChannelAccountSerializer
    filterset_class = ChannelAccountFilterSet
    write_scope = "admin"
    keyset_orderings = {"id": ("id",), "-id": ("-id",)}

    def get_queryset(self) -> QuerySet[ChannelAccount]:
        return channel_account_list_for_user(user=self.request.user)

    def _render(self, account_id: int, **kwargs: object) -> Response:
        account = channel_account_get_for_user(user=self.request.user, account_id=account_id)
        return Response(ChannelAccountSerializer(account).data, **kwargs)

    def create(self, request: Request) -> Response:
        require_unrestricted(request)
        data = ChannelAccountCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = channel_account_create(**data.validated_data)
        return self._render(account.pk, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        account = channel_account_get_for_user(user=request.user, account_id=int(pk))
        data = ChannelAccountUpdateInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        channel_account_update(account_id=account.pk, changes=dict(data.validated_data))
        return self._render(account.pk)

    def destroy(self, request: Request, pk: str) -> Response:
        account = channel_account_get_for_user(user=request.user, account_id=int(pk))
        channel_account_delete(account_id=account.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary="List webhook deliveries"),
    retrieve=extend_schema(summary="Get a webhook delivery"),
)
class WebhookDeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiGenericViewSet):
    """Webhook requests as received (bodies and headers stay on the server), and their replay."""

    serializer_class = WebhookDeliverySerializer
    filterset_class = WebhookDeliveryFilterSet
    write_scope = "admin"

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        return delivery_list_for_user(user=self.request.user)

    @extend_schema(summary="Replay one delivery (ingest is idempotent)", request=None,
                   responses={202: WebhookDeliverySerializer})
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, pk: str) -> Response:
        delivery = delivery_get_for_user(user=request.user, delivery_id=int(pk))
        deliveries_replay(delivery_ids=[delivery.pk], include_processed=True)
        delivery = delivery_get_for_user(user=request.user, delivery_id=delivery.pk)
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="Replay the failed deliveries of a channel account",
                   operation_id="webhook_deliveries_replay_account",
                   request=WebhookDeliveryReplayInputSerializer, responses={202: ReplayResultSerializer})
    @action(detail=False, methods=["post"], url_path="replay")
    def replay_account(self, request: Request) -> Response:
        data = WebhookDeliveryReplayInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account_id = data.validated_data["channel_account_id"]
        if not channel_scope_for_user(request.user).allows(account_id):
            raise NotFound("No such channel account.", code="not_found", field="channel_account_id")
        queued = deliveries_replay(account_id=account_id, include_processed=data.validated_data["include_processed"])
        return Response({"queued": queued}, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    create=extend_schema(summary="Queue a reply in a conversation", parameters=[CONVERSATION_PK],
                         request=ReplyCreateInputSerializer, responses={201: InteractionSerializer}),
)
class ConversationReplyViewSet(ApiGenericViewSet):
    """`POST conversations/{id}/replies/`: the reply is stored queued and sent by the outbound queue."""

    serializer_class = InteractionSerializer

    def create(self, request: Request, conversation_pk: str) -> Response:
        conversation = conversation_get_for_user(user=request.user, conversation_id=int(conversation_pk))
        data = ReplyCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reply = reply_queue(conversation=conversation, text=data.validated_data["text"], actor=request.user,
                            private=data.validated_data["private"])
        reply = interaction_get_for_user(user=request.user, interaction_id=reply.pk)
        return Response(InteractionSerializer(reply).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    create=extend_schema(summary="Send a failed reply again", parameters=[INTERACTION_PK], request=None,
                         responses={202: InteractionSerializer}),
)
class ReplyRetryViewSet(ApiGenericViewSet):
    """`POST interactions/{id}/retry/`: an agent's decision to send a failed (or unknown) reply again."""

    serializer_class = InteractionSerializer

    def create(self, request: Request, interaction_pk: str) -> Response:
        interaction = interaction_get_for_user(user=request.user, interaction_id=int(interaction_pk))
        reply_retry(interaction_id=interaction.pk)
        reply = interaction_get_for_user(user=request.user, interaction_id=interaction.pk)
        return Response(InteractionSerializer(reply).data, status=status.HTTP_202_ACCEPTED)
