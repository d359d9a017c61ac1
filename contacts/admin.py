from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from socialcrm.errors import ServiceError

from .models import AuditEvent, ContactPoint, Customer, DuplicateSuggestion, SocialIdentity
from .search import customers_search_text_refresh
from .suggestions import suggestion_accept, suggestion_reject


class SocialIdentityInline(admin.TabularInline):
    model = SocialIdentity
    fields = ["platform", "scope", "external_id", "handle", "display_name", "last_seen_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False


class ContactPointInline(admin.TabularInline):
    model = ContactPoint
    extra = 0


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["id", "display_name", "customer_number", "updated_at", "merged_into"]
    search_fields = ["display_name", "customer_number"]
    inlines = [SocialIdentityInline, ContactPointInline]
    readonly_fields = ["merged_into"]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """After the customer and its contact points are saved: its search text (name, e-mail addresses)."""
        super().save_related(request, form, formsets, change)
        customers_search_text_refresh(customer_ids=[form.instance.pk])


@admin.register(SocialIdentity)
class SocialIdentityAdmin(admin.ModelAdmin):
    list_display = ["id", "platform", "handle", "display_name", "customer", "last_seen_at"]
    list_filter = ["platform"]
    search_fields = ["handle", "external_id"]
    raw_id_fields = ["customer"]

    def save_model(self, request: HttpRequest, obj: SocialIdentity, form: Any, change: bool) -> None:
        """Save the identity, then the search text of the customer it belongs to (and of the one it left)."""
        before = SocialIdentity.objects.filter(pk=obj.pk).values_list("customer_id", flat=True).first()
        super().save_model(request, obj, form, change)
        customers_search_text_refresh(customer_ids=[obj.customer_id, *([before] if before else [])])

    def delete_model(self, request: HttpRequest, obj: SocialIdentity) -> None:
        customer_id = obj.customer_id
        super().delete_model(request, obj)
        customers_search_text_refresh(customer_ids=[customer_id])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[SocialIdentity]) -> None:
        customer_ids = list(queryset.values_list("customer_id", flat=True))
        super().delete_queryset(request, queryset)
        customers_search_text_refresh(customer_ids=customer_ids)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The resolution log, read-only: events are written by the services in `contacts.merge` and never changed."""

    list_display = ["id", "created_at", "kind", "actor_label", "customer_id", "source_customer_id", "undone_by"]
    list_filter = ["kind"]
    search_fields = ["=customer__id", "=source_customer__id", "actor_label"]
    readonly_fields = ["kind", "actor", "actor_label", "reason", "customer_id", "source_customer_id", "moved",
                       "created_at", "undone_by"]
    fields = readonly_fields
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False


@admin.register(DuplicateSuggestion)
class DuplicateSuggestionAdmin(admin.ModelAdmin):
    """The review queue, read-only: suggestions are written by the scorer and decided by the two actions."""

    list_display = ["id", "customer_low", "customer_high", "score", "status", "model_version", "created_at"]
    list_filter = ["status", "model_version"]
    search_fields = ["=customer_low", "=customer_high"]
    ordering = ["status", "-score"]
    readonly_fields = ["customer_low", "customer_high", "score", "probability", "evidence", "model_version",
                       "status", "created_at", "updated_at", "decided_at", "decided_by", "decided_by_label",
                       "reason"]
    fields = readonly_fields
    actions = ["accept", "reject"]
    show_full_result_count = False

    @admin.display(description="Evidence (bits per field)")
    def evidence(self, obj: DuplicateSuggestion) -> str:
        return format_html_join(
            "", "<div>{}: {} ({} bits) &mdash; {} | {}</div>",
            ((e.get("field"), e.get("level"), e.get("bits"), e.get("left"), e.get("right"))
             for e in obj.explanation or []),
        )

    @admin.action(description="Accept: merge into the older customer")
    def accept(self, request: HttpRequest, queryset: QuerySet[DuplicateSuggestion]) -> None:
        done = 0
        for pk in queryset.filter(status=DuplicateSuggestion.Status.OPEN).values_list("pk", flat=True):
            try:
                suggestion_accept(suggestion=pk, actor=request.user)
                done += 1
            except ServiceError as exc:
                self.message_user(request, f"Suggestion {pk}: {exc}", messages.WARNING)
        self.message_user(request, f"{done} suggestion(s) accepted.")

    @admin.action(description="Reject: never suggest these pairs again")
    def reject(self, request: HttpRequest, queryset: QuerySet[DuplicateSuggestion]) -> None:
        done = 0
        for pk in queryset.filter(status=DuplicateSuggestion.Status.OPEN).values_list("pk", flat=True):
            try:
                suggestion_reject(suggestion=pk, actor=request.user, reason="rejected in the admin")
                done += 1
            except ServiceError as exc:
                self.message_user(request, f"Suggestion {pk}: {exc}", messages.WARNING)
        self.message_user(request, f"{done} suggestion(s) rejected.")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: DuplicateSuggestion | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: DuplicateSuggestion | None = None) -> bool:
        return False
