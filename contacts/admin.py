from django.contrib import admin

from .models import ContactPoint, Customer, SocialIdentity


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
