"""Customers and social identities under /api/v1/.

A customer id that was merged away (a tombstone) answers a GET with `301 Moved Permanently` to the
surviving customer's URL (followed through several merges), and a PATCH with `409 customer_merged` and
the survivor's URL in `Location`. Customer detail carries an `ETag`; `If-None-Match` answers 304.

Identity resolution (scope `merge`): merge preview, merge, undo of a merge, link and unlink of a social identity,
and its link by a customer number verified in DM (`verify-customer-number`, which answers both events it wrote).
The others answer the audit event they wrote. A restricted user must see every customer and identity involved
(404 otherwise); a tombstone in view is refused by the service with a 409 (`target_merged`, `source_merged`).

GDPR (scope `gdpr`): export and erasure of a person (a live customer with its tombstones; a tombstone id means
its survivor). Both touch data on every channel account, including accounts other teams handle, so they are
for unrestricted users only: a restricted user gets 403 `restricted_user` whatever the id, which confirms
nothing about customers out of view.

The audit log (`audit-events`, scope `read`) is read-only, newest first; a restricted user sees the events of
customers in view.

Duplicate suggestions (`duplicate-suggestions`): the pairs the dedupe model scored, best first, each with its
evidence field by field (scope `read`); accepting one merges the pair into the older customer, rejecting one keeps
the pair apart for good (scope `merge`). A restricted user sees a suggestion only when both customers are in view.
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

from access.permissions import require_unrestricted
from contacts.gdpr import customer_erase, customer_export
from contacts.merge import customer_merge, customer_merge_preview, customer_unmerge, identity_link, identity_unlink
from contacts.models import AuditEvent, Customer, DuplicateSuggestion, SocialIdentity
from contacts.suggestions import suggestion_accept, suggestion_reject
from contacts.verification import (
    EVIDENCE_ITEMS,
    VerificationErrorCode,
    customers_holding_number,
    identity_link_by_customer_number,
)
from socialcrm.api.errors import error_body
from socialcrm.api.views import ApiGenericViewSet, conditional_response
from socialcrm.errors import NotFound

from .filters import AuditEventFilterSet, CustomerFilterSet, DuplicateSuggestionFilterSet, SocialIdentityFilterSet
from .selectors import (
    audit_event_list_for_user,
    customer_get_for_user,
    customer_in_view_or_404,
    customer_list_for_user,
    identity_in_view_or_404,
    identity_list_for_user,
    merge_event_get_for_user,
    suggestion_get_for_user,
    suggestion_list_for_user,
)
from .serializers import (
    AuditEventSerializer,
    CustomerCreateInputSerializer,
    CustomerEraseInputSerializer,
    CustomerExportSerializer,
    CustomerMergeInputSerializer,
    CustomerNumberLinkSerializer,
    CustomerSerializer,
    CustomerUpdateInputSerializer,
    DuplicateSuggestionSerializer,
    IdentityLinkInputSerializer,
    IdentityUnlinkInputSerializer,
    IdentityVerifyCustomerNumberInputSerializer,
    MergePreviewQuerySerializer,
    MergePreviewSerializer,
    MergeUndoInputSerializer,
    SocialIdentitySerializer,
    SuggestionAcceptInputSerializer,
    SuggestionRejectInputSerializer,
)
from .services import customer_create, customer_update

ETAG_HEADER = OpenApiParameter("ETag", OpenApiTypes.STR, OpenApiParameter.HEADER, response=[200, 304],
                               description="Version of the representation; send it back in If-None-Match.")
IF_NONE_MATCH = OpenApiParameter("If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER,
                                 description="An ETag from an earlier answer: 304 if the customer is unchanged.")
LOCATION_HEADER = OpenApiParameter("Location", OpenApiTypes.URI, OpenApiParameter.HEADER, response=[301],
                                   description="The surviving customer's URL.")


def customer_url(request: Request, customer_id: int, suffix: str = "") -> str:
    return request.build_absolute_uri(reverse("contacts-api:customer-detail", kwargs={"pk": customer_id}) + suffix)


def include_merged(request: Request) -> bool:
    return request.query_params.get("include_merged", "").lower() in ("true", "1")


@extend_schema_view(
    list=extend_schema(summary="List and search customers"),
    create=extend_schema(summary="Create a customer", request=CustomerCreateInputSerializer,
                         responses={201: CustomerSerializer}),
    partial_update=extend_schema(summary="Change a customer", request=CustomerUpdateInputSerializer,
                                 responses={200: CustomerSerializer}),
)
class CustomerViewSet(mixins.ListModelMixin, ApiGenericViewSet):
    """Customers the caller may see: those with an identity that has a conversation on a channel account of
    the caller's teams (every customer, for users with the access.view_all_channels permission)."""

    serializer_class = CustomerSerializer
    filterset_class = CustomerFilterSet
    keyset_orderings = {
        "-updated_at": ("-updated_at", "-id"),
        "updated_at": ("updated_at", "id"),
        "-id": ("-id",),
        "id": ("id",),
    }

    def get_queryset(self) -> QuerySet[Customer]:
        return customer_list_for_user(user=self.request.user, include_merged=include_merged(self.request))

    @extend_schema(
        summary="Get a customer",
        parameters=[IF_NONE_MATCH, ETAG_HEADER, LOCATION_HEADER],
        responses={
            200: CustomerSerializer,
            301: OpenApiResponse(description="A merged-away customer: `Location` is the surviving customer."),
            304: OpenApiResponse(description="Unchanged since the ETag in If-None-Match."),
        },
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        customer, survivor_id = customer_get_for_user(user=request.user, customer_id=int(pk))
        if survivor_id is not None:
            return HttpResponsePermanentRedirect(customer_url(request, survivor_id))
        return conditional_response(request, CustomerSerializer(customer).data)

    def create(self, request: Request) -> Response:
        require_unrestricted(request)  # a customer with no identities is in view of unrestricted users only
        data = CustomerCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        customer = customer_create(**data.validated_data)
        customer = customer_list_for_user(user=request.user).get(pk=customer.pk)
        return Response(CustomerSerializer(customer).data, status=status.HTTP_201_CREATED,
                        headers={"Location": customer_url(request, customer.pk)})

    def partial_update(self, request: Request, pk: str) -> Response:
        customer, survivor_id = customer_get_for_user(user=request.user, customer_id=int(pk))
        if survivor_id is not None:
            return Response(
                error_body("customer_merged", f"Customer {pk} was merged into customer {survivor_id}; "
                           "change the surviving customer instead."),
                status=status.HTTP_409_CONFLICT, headers={"Location": customer_url(request, survivor_id)},
            )
        data = CustomerUpdateInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        customer_update(customer_id=customer.pk, changes=dict(data.validated_data))
        customer = customer_list_for_user(user=request.user).get(pk=customer.pk)
        return Response(CustomerSerializer(customer).data)

    @extend_schema(
        summary="Preview merging another customer into this one",
        description="Field by field: each side's value, the merged result and the rule that decided it, plus the "
        "contact points and identities that would move. Nothing is written. `conflicts` lists the fields that "
        "need a choice before `merge` can run. Both customers must be in the caller's view (404 otherwise); "
        "a tombstone on either side is a 409.",
        parameters=[MergePreviewQuerySerializer],
        responses={200: MergePreviewSerializer},
    )
    @action(detail=True, methods=["get"], url_path="merge-preview", required_scope="merge")
    def merge_preview(self, request: Request, pk: str) -> Response:
        target_id = customer_in_view_or_404(user=request.user, customer_id=int(pk))
        query = MergePreviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        source_id = customer_in_view_or_404(user=request.user, customer_id=query.validated_data["source"],
                                            field="source")
        preview = customer_merge_preview(target=target_id, source=source_id)
        return Response(MergePreviewSerializer(preview).data)

    @extend_schema(
        summary="Merge another customer into this one",
        description="The source's identities, contact points, tags and notes move to this customer (the target) "
        "by the rules the preview shows; the source becomes a tombstone. Answers the merge's audit event, "
        "which `POST merges/{id}/undo/` inverts. 409 for a merge into itself (`merge_into_self`), a tombstone "
        "on either side (`target_merged`, `source_merged`) and two different customer numbers without a "
        "choice (`customer_number_conflict`). Both customers must be in the caller's view (404 otherwise).",
        request=CustomerMergeInputSerializer,
        responses={200: AuditEventSerializer},
    )
    @action(detail=True, methods=["post"], required_scope="merge")
    def merge(self, request: Request, pk: str) -> Response:
        target_id = customer_in_view_or_404(user=request.user, customer_id=int(pk))
        data = CustomerMergeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        source_id = customer_in_view_or_404(user=request.user, customer_id=data.validated_data["source"],
                                            field="source")
        event = customer_merge(target=target_id, source=source_id, actor=request.user,
                               reason=data.validated_data["reason"],
                               choices=dict(data.validated_data.get("choices") or {}))
        return Response(AuditEventSerializer(event).data)

    @extend_schema(
        summary="Export everything held about a customer (GDPR)",
        description="The customer with its tombstones, identities, contact points, audit events and every app's "
        "rows about the person, as JSON; recorded as an `export` audit event. A tombstone id exports its "
        "survivor. Unrestricted users only: a restricted (team) user gets 403 `restricted_user`, because the "
        "export holds data of every channel account.",
        responses={200: CustomerExportSerializer},
    )
    @action(detail=True, methods=["get"], required_scope="gdpr")
    def export(self, request: Request, pk: str) -> Response:
        require_unrestricted(request)
        customer_id = customer_in_view_or_404(user=request.user, customer_id=int(pk))
        data = customer_export(customer=customer_id, actor=request.user)
        return Response(data, headers={"Cache-Control": "no-store"})

    @extend_schema(
        summary="Erase everything held about a customer (GDPR)",
        description="Deletes or anonymises the person's data (the customer, its tombstones, identities, contact "
        "points and every app's rows) and answers the `erase` audit event (counts and hashes, no personal "
        "data). A tombstone id erases its survivor. 409 `legal_hold` (with the hold's reason) while the "
        "customer or a tombstone of it is under a legal hold. Unrestricted users only: a restricted (team) "
        "user gets 403 `restricted_user`, because erasure reaches data of every channel account.",
        request=CustomerEraseInputSerializer,
        responses={200: AuditEventSerializer},
    )
    @action(detail=True, methods=["post"], required_scope="gdpr")
    def erase(self, request: Request, pk: str) -> Response:
        require_unrestricted(request)
        customer_id = customer_in_view_or_404(user=request.user, customer_id=int(pk))
        data = CustomerEraseInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        event = customer_erase(customer=customer_id, actor=request.user, reason=data.validated_data["reason"])
        return Response(AuditEventSerializer(event).data)


@extend_schema_view(
    list=extend_schema(summary="List social identities"),
    retrieve=extend_schema(summary="Get a social identity"),
)
class SocialIdentityViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiGenericViewSet):
    """Social identities: every identity of the customers the caller may see."""

    serializer_class = SocialIdentitySerializer
    filterset_class = SocialIdentityFilterSet

    def get_queryset(self) -> QuerySet[SocialIdentity]:
        return identity_list_for_user(user=self.request.user)

    @extend_schema(
        summary="Link a social identity to another customer",
        description="The identity (with its conversations and interactions) moves to `customer`; answers the "
        "`link` audit event. 409 if it already belongs there (`already_linked`) or `customer` is a tombstone "
        "(`target_merged`). The identity and the customer must be in the caller's view (404 otherwise).",
        request=IdentityLinkInputSerializer,
        responses={200: AuditEventSerializer},
    )
    @action(detail=True, methods=["post"], required_scope="merge")
    def link(self, request: Request, pk: str) -> Response:
        identity_id = identity_in_view_or_404(user=request.user, identity_id=int(pk))
        data = IdentityLinkInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        customer_id = customer_in_view_or_404(user=request.user, customer_id=data.validated_data["customer"],
                                              field="customer")
        event = identity_link(identity=identity_id, customer=customer_id, actor=request.user,
                              reason=data.validated_data["reason"])
        return Response(AuditEventSerializer(event).data)

    @extend_schema(
        summary="Split a social identity off into a new customer",
        description="The identity moves to a new customer of its own (named after it); answers the `unlink` audit "
        "event, whose `customer_id` is the new customer. 409 `only_identity` if it is its customer's only "
        "identity. The identity must be in the caller's view (404 otherwise).",
        request=IdentityUnlinkInputSerializer,
        responses={200: AuditEventSerializer},
    )
    @action(detail=True, methods=["post"], required_scope="merge")
    def unlink(self, request: Request, pk: str) -> Response:
        identity_id = identity_in_view_or_404(user=request.user, identity_id=int(pk))
        data = IdentityUnlinkInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        new_customer = identity_unlink(identity=identity_id, actor=request.user,
                                       reason=data.validated_data["reason"])
        event = AuditEvent.objects.filter(kind=AuditEvent.Kind.UNLINK, customer_id=new_customer.pk).latest("pk")
        return Response(AuditEventSerializer(event).data)

    @extend_schema(
        summary="Link a social identity by a customer number verified in DM",
        description="The \"Telekom hilft\" flow: the agent asked the person in DM for their customer number and "
        "a few details. At least one of `postal_code`, `birth_date`, `last_name` must match the profile of the "
        "customer holding the number and none may contradict it; a last name alone is never enough (409 "
        "`verification_failed`, naming neither the detail nor the stored values). On success the identity "
        "moves to that customer: its former customer is merged in when the identity was its only one and it "
        "had no customer number (undo the merge to reverse), else the identity alone is linked over. A `link` "
        "event records the verification (`moved.verified_by`: `customer_number`). Repeating it changes nothing "
        "(`changed`: false). The identity must be in the caller's view, and so must the customer holding the "
        "number: otherwise the answer is the same 404 `customer_number_unknown` as for an unknown number.",
        request=IdentityVerifyCustomerNumberInputSerializer,
        responses={200: CustomerNumberLinkSerializer},
    )
    @action(detail=True, methods=["post"], url_path="verify-customer-number", required_scope="merge")
    def verify_customer_number(self, request: Request, pk: str) -> Response:
        identity_id = identity_in_view_or_404(user=request.user, identity_id=int(pk))
        data = IdentityVerifyCustomerNumberInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        holders = customers_holding_number(values["customer_number"])
        visible = customer_list_for_user(user=request.user, with_related=False).filter(pk__in=holders)
        if not holders or not visible.exists():
            # An unknown number and another team's customer answer alike: nothing leaks.
            raise NotFound("No customer has this customer number.",
                           code=VerificationErrorCode.CUSTOMER_NUMBER_UNKNOWN, field="customer_number")
        result = identity_link_by_customer_number(
            identity=identity_id, customer_number=values["customer_number"],
            evidence={name: values[name] for name in EVIDENCE_ITEMS if name in values},
            actor=request.user, reason=values["reason"],
        )
        return Response(CustomerNumberLinkSerializer(result).data)


class MergeViewSet(ApiGenericViewSet):
    """Merges, by the id of their audit event: only the undo action."""

    queryset = AuditEvent.objects.filter(kind=AuditEvent.Kind.MERGE)
    serializer_class = AuditEventSerializer
    pagination_class = None
    filter_backends: list = []

    @extend_schema(
        summary="Undo a merge",
        description="Both customers as they were before the merge, each with its own identities and contact "
        "points; answers the `unmerge` audit event. 409 when refused: already undone (`already_undone`), a "
        "later merge of either customer not undone yet (`later_merge_not_undone`, undo newest first), or an "
        "identity moved since (`identity_moved_since`). 404 for an id that is not a merge the caller sees.",
        request=MergeUndoInputSerializer,
        responses={200: AuditEventSerializer},
    )
    @action(detail=True, methods=["post"], required_scope="merge")
    def undo(self, request: Request, pk: str) -> Response:
        event = merge_event_get_for_user(user=request.user, event_id=int(pk))
        data = MergeUndoInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        undo = customer_unmerge(merge_event=event.pk, actor=request.user, reason=data.validated_data["reason"])
        return Response(AuditEventSerializer(undo).data)


@extend_schema_view(
    list=extend_schema(summary="List audit events", description="The append-only log of merges, unmerges, links, "
                       "unlinks, exports and erasures, newest first. A restricted user sees the events of the "
                       "customers in view."),
    retrieve=extend_schema(summary="Get an audit event"),
)
class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiGenericViewSet):
    """The audit log, read-only."""

    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    keyset_orderings = {"-id": ("-id",), "id": ("id",)}

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return audit_event_list_for_user(user=self.request.user)


@extend_schema_view(
    list=extend_schema(summary="List duplicate suggestions",
                       description="Pairs of customers the dedupe model takes for one person, best score first, "
                       "each with its evidence field by field. Only open suggestions unless `status` says "
                       "otherwise. A restricted user sees a suggestion when both customers are in view."),
)
class DuplicateSuggestionViewSet(mixins.ListModelMixin, ApiGenericViewSet):
    """Duplicate suggestions: review, accept (merge) or reject."""

    serializer_class = DuplicateSuggestionSerializer
    filterset_class = DuplicateSuggestionFilterSet
    keyset_orderings = {"-score": ("-score", "-id"), "score": ("score", "id")}

    def get_queryset(self) -> QuerySet[DuplicateSuggestion]:
        return suggestion_list_for_user(user=self.request.user)

    def _row(self, pk: int) -> dict:
        return DuplicateSuggestionSerializer(suggestion_get_for_user(user=self.request.user, suggestion_id=pk)).data

    @extend_schema(summary="Get a duplicate suggestion", responses={200: DuplicateSuggestionSerializer})
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(self._row(int(pk)))

    @extend_schema(
        summary="Accept a duplicate suggestion: merge the pair",
        description="The newer customer is merged into the older one, as `POST customers/{id}/merge/` would; "
        "answers the merge's audit event (undone with `POST merges/{id}/undo/`). 409 `suggestion_decided` when "
        "the suggestion was accepted or rejected already, and the merge's own conflicts (a tombstone on either "
        "side, two different customer numbers). 404 for a suggestion the caller does not see.",
        request=SuggestionAcceptInputSerializer,
        responses={200: AuditEventSerializer},
    )
    @action(detail=True, methods=["post"], required_scope="merge")
    def accept(self, request: Request, pk: str) -> Response:
        suggestion = suggestion_get_for_user(user=request.user, suggestion_id=int(pk))
        data = SuggestionAcceptInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        event = suggestion_accept(suggestion=suggestion.pk, actor=request.user, reason=data.validated_data["reason"])
        return Response(AuditEventSerializer(event).data)

    @extend_schema(
        summary="Reject a duplicate suggestion",
        description="The pair is recorded as two people (a `suggestion_rejected` audit event with the reason) and "
        "is never suggested or linked automatically again; answers the suggestion, now `rejected`. 409 "
        "`suggestion_decided` when it was accepted or rejected already. 404 for a suggestion the caller does "
        "not see.",
        request=SuggestionRejectInputSerializer,
        responses={200: DuplicateSuggestionSerializer},
    )
    @action(detail=True, methods=["post"], required_scope="merge")
    def reject(self, request: Request, pk: str) -> Response:
        suggestion = suggestion_get_for_user(user=request.user, suggestion_id=int(pk))
        data = SuggestionRejectInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        suggestion_reject(suggestion=suggestion.pk, actor=request.user, reason=data.validated_data["reason"])
        return Response(self._row(suggestion.pk))
