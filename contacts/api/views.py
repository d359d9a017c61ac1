"""Customers and social identities under /api/v1/.

A customer id that was merged away (a tombstone) answers a GET with `301 Moved Permanently` to the
surviving customer's URL (followed through several merges), and a PATCH with `409 customer_merged` and
the survivor's URL in `Location`. Customer detail carries an `ETag`; `If-None-Match` answers 304.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpResponsePermanentRedirect
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.request import Request
from rest_framework.response import Response

from access.permissions import require_unrestricted
from contacts.models import Customer, SocialIdentity
from socialcrm.api.errors import error_body
from socialcrm.api.views import ApiGenericViewSet, conditional_response

from .filters import CustomerFilterSet, SocialIdentityFilterSet
from .selectors import customer_get_for_user, customer_list_for_user, identity_list_for_user
from .serializers import (
    CustomerCreateInputSerializer,
    CustomerSerializer,
    CustomerUpdateInputSerializer,
    SocialIdentitySerializer,
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
