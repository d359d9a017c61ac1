"""Admin for teams and API tokens. A token is shown once, on the page that follows its creation."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from .models import ApiToken, Scope, Team
from .services import api_token_create, api_token_revoke


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    filter_horizontal = ["members", "channel_accounts"]


class ApiTokenForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiToken
        fields = ["name", "user", "scopes", "expires_at"]

    def clean_expires_at(self) -> dt.datetime | None:
        expires_at = self.cleaned_data.get("expires_at")
        if self.instance.pk is None and expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """The token hash is never shown; the token itself only once, right after it was created."""

    form = ApiTokenForm
    list_display = ["name", "user", "prefix", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "user__username"]
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            return []
        return ["user", "prefix", "created_at", "revoked_at", "last_used_at"]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            return ["name", "user", "scopes", "expires_at"]
        return ["name", "user", "prefix", "scopes", "expires_at", "created_at", "revoked_at", "last_used_at"]

    def save_model(self, request: HttpRequest, obj: ApiToken, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        stored, token = api_token_create(
            user=form.cleaned_data["user"], name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"],
            expires_at=form.cleaned_data.get("expires_at"),
        )
        obj.pk = stored.pk
        obj.prefix = stored.prefix
        obj.created_at = stored.created_at
        obj._created_token = token  # only on this object, for the one response below

    def response_add(self, request: HttpRequest, obj: ApiToken, post_url_continue: Any = None) -> HttpResponse:
        token = getattr(obj, "_created_token", None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        response = TemplateResponse(request, "admin/access/apitoken/created.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "API token created",
            "token": token, "stored": obj,
        })
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        now = timezone.now()
        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token=token, now=now)
        self.message_user(request, "Revoked.", messages.SUCCESS)
