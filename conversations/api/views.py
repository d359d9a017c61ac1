"""Conversations, interactions and customer timelines under /api/v1/.

Everything is scoped to the caller's teams (see `access.selectors`): a conversation, interaction or note
out of view answers 404 in detail views and actions, and never appears in a list. Replies
(`POST conversations/{id}/replies/`) are a channels action and live in `channels/api/`.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpResponsePermanentRedirect
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from access.selectors import channel_scope_for_user
from contacts.api.selectors import customer_get_for_user
from conversations.models import Conversation, ConversationNote, Interaction
from conversations.selectors import (
    conversation_get_for_user,
    conversation_list_for_user,
    conversation_notes_for_user,
    customer_timeline,
    interaction_list_for_user,
)
from socialcrm.api.views import ApiGenericViewSet

from .filters import ConversationFilterSet, InteractionFilterSet
from .pagination import TimelinePagination
from .serializers import (
    ConversationAssignInputSerializer,
    ConversationNoteCreateInputSerializer,
    ConversationNoteSerializer,
    ConversationSerializer,
    ConversationStatusInputSerializer,
    ConversationTagInputSerializer,
    InteractionSerializer,
)
from .services import (
    conversation_add_note,
    conversation_add_tag,
    conversation_assign,
    conversation_remove_tag,
    conversation_set_status,
)

CONVERSATION_PK = OpenApiParameter("conversation_pk", OpenApiTypes.INT, OpenApiParameter.PATH,
                                   description="The conversation's id.")
CUSTOMER_PK = OpenApiParameter("customer_pk", OpenApiTypes.INT, OpenApiParameter.PATH,
                               description="The customer's id.")


@extend_schema_view(
    list=extend_schema(summary="List conversations"),
    retrieve=extend_schema(summary="Get a conversation"),
)
class ConversationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiGenericViewSet):
    """Conversations on the caller's channel accounts, with assign / status / tag actions."""

    serializer_class = ConversationSerializer
    filterset_class = ConversationFilterSet
    keyset_orderings = {
        "-updated_at": ("-updated_at", "-id"),
        "updated_at": ("updated_at", "id"),
        "-id": ("-id",),
        "id": ("id",),
    }

    def get_queryset(self) -> QuerySet[Conversation]:
        return conversation_list_for_user(user=self.request.user)

    def _render(self, conversation_id: int) -> Response:
        conversation = conversation_get_for_user(user=self.request.user, conversation_id=conversation_id)
        return Response(ConversationSerializer(conversation).data)

    @extend_schema(summary="Assign or unassign a conversation", request=ConversationAssignInputSerializer,
                   responses={200: ConversationSerializer})
    @action(detail=True, methods=["post"])
    def assign(self, request: Request, pk: str) -> Response:
        conversation = conversation_get_for_user(user=request.user, conversation_id=int(pk))
        data = ConversationAssignInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conversation_assign(conversation_id=conversation.pk, assignee_id=data.validated_data["assignee_id"])
        return self._render(conversation.pk)

    @extend_schema(summary="Set a conversation's status", request=ConversationStatusInputSerializer,
                   responses={200: ConversationSerializer})
    @action(detail=True, methods=["post"], url_path="status")
    def set_status(self, request: Request, pk: str) -> Response:
        conversation = conversation_get_for_user(user=request.user, conversation_id=int(pk))
        data = ConversationStatusInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conversation_set_status(conversation_id=conversation.pk, status=data.validated_data["status"])
        return self._render(conversation.pk)

    @extend_schema(summary="Tag a conversation", request=ConversationTagInputSerializer,
                   responses={200: ConversationSerializer})
    @action(detail=True, methods=["post"], url_path="tags")
    def add_tag(self, request: Request, pk: str) -> Response:
        conversation = conversation_get_for_user(user=request.user, conversation_id=int(pk))
        data = ConversationTagInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conversation_add_tag(conversation_id=conversation.pk, name=data.validated_data["tag"])
        return self._render(conversation.pk)

    @extend_schema(summary="Take a tag off a conversation", request=None, responses={200: ConversationSerializer},
                   parameters=[OpenApiParameter("tag", OpenApiTypes.STR, OpenApiParameter.PATH)])
    @action(detail=True, methods=["delete"], url_path=r"tags/(?P<tag>[^/]{1,64})")
    def remove_tag(self, request: Request, pk: str, tag: str) -> Response:
        conversation = conversation_get_for_user(user=request.user, conversation_id=int(pk))
        conversation_remove_tag(conversation_id=conversation.pk, name=tag)
        return self._render(conversation.pk)


@extend_schema_view(
    list=extend_schema(summary="List a conversation's notes", parameters=[CONVERSATION_PK]),
    create=extend_schema(summary="Add a note to a conversation", parameters=[CONVERSATION_PK],
                         request=ConversationNoteCreateInputSerializer, responses={201: ConversationNoteSerializer}),
)
class ConversationNoteViewSet(mixins.ListModelMixin, ApiGenericViewSet):
    """Internal notes of one conversation, newest first."""

    serializer_class = ConversationNoteSerializer

    def get_queryset(self) -> QuerySet[ConversationNote]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no conversation
            return ConversationNote.objects.none()
        return conversation_notes_for_user(user=self.request.user,
                                           conversation_id=int(self.kwargs["conversation_pk"]))

    def create(self, request: Request, conversation_pk: str) -> Response:
        conversation = conversation_get_for_user(user=request.user, conversation_id=int(conversation_pk))
        data = ConversationNoteCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        note = conversation_add_note(conversation_id=conversation.pk, author=request.user,
                                     text=data.validated_data["text"])
        return Response(ConversationNoteSerializer(note).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(summary="List interactions"),
    retrieve=extend_schema(summary="Get an interaction"),
)
class InteractionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiGenericViewSet):
    """Interactions on the caller's channel accounts. The `occurred_at` orderings are meant for lists
    filtered by conversation or customer; the id orderings (stored order) are fast on any list."""

    serializer_class = InteractionSerializer
    filterset_class = InteractionFilterSet
    keyset_orderings = {
        "-id": ("-id",),
        "id": ("id",),
        "-occurred_at": ("-occurred_at", "-id"),
        "occurred_at": ("occurred_at", "id"),
    }

    def get_queryset(self) -> QuerySet[Interaction]:
        return interaction_list_for_user(user=self.request.user)


class CustomerTimelineViewSet(ApiGenericViewSet):
    """A customer's interactions across every channel and identity, newest first."""

    serializer_class = InteractionSerializer
    pagination_class = TimelinePagination
    queryset = Interaction.objects.none()  # the rows come from `customer_timeline`; this names the model

    @extend_schema(
        summary="A customer's timeline",
        parameters=[CUSTOMER_PK],
        responses={200: InteractionSerializer(many=True),
                   301: OpenApiResponse(description="A merged-away customer: `Location` is the survivor's timeline.")},
    )
    def list(self, request: Request, customer_pk: str) -> Response:
        customer, survivor_id = customer_get_for_user(user=request.user, customer_id=int(customer_pk),
                                                      with_related=False)
        if survivor_id is not None:
            url = reverse("conversations-api:customer-timeline-list", kwargs={"customer_pk": survivor_id})
            return HttpResponsePermanentRedirect(request.build_absolute_uri(url))
        scope = channel_scope_for_user(request.user)
        accounts = None if scope.unrestricted else scope.account_ids

        def fetch(limit: int, before: tuple | None) -> list[Interaction]:
            return customer_timeline(customer_id=customer.pk, limit=limit, before=before,
                                     channel_account_ids=accounts)

        rows = self.paginator.paginate_timeline(request, fetch)
        for row in rows:
            row.customer_id = customer.pk
        return self.paginator.get_paginated_response(InteractionSerializer(rows, many=True).data)
