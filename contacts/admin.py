from django.contrib import admin
from django.http import HttpRequest

from .models import AuditEvent, ContactPoint, Customer, SocialIdentity


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


@admin.register(SocialIdentity)
class SocialIdentityAdmin(admin.ModelAdmin):
    list_display = ["id", "platform", "handle", "display_name", "customer", "last_seen_at"]
    list_filter = ["platform"]
    search_fields = ["handle", "external_id"]
    raw_id_fields = ["customer"]


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
