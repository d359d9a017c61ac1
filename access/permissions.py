"""Scope checks for the API.

Every view requires a scope: `read` for safe methods and `write` for the others, unless the view says
otherwise (`read_scope`, `write_scope`) or an action names its own (`@action(..., required_scope="merge")`).
A token has the scopes it was created with. A user logged in by session (the console) has `read` and
`write`, `merge` with the permission `access.merge_customers`, `gdpr` with `access.handle_gdpr_requests` (the
"CRM staff" group has both), and a superuser every scope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from .models import ApiToken, Scope
from .selectors import channel_scope_for_user

if TYPE_CHECKING:
    from rest_framework.views import APIView

SESSION_SCOPES = frozenset({Scope.READ.value, Scope.WRITE.value})
# Scopes a session user holds through a permission (given by a group such as "CRM staff").
PERMISSION_SCOPES = {
    Scope.MERGE.value: "access.merge_customers",
    Scope.GDPR.value: "access.handle_gdpr_requests",
}


def scopes_of(request: Request) -> frozenset[str]:
    """The scopes the request's credentials carry."""
    if isinstance(request.auth, ApiToken):
        return frozenset(request.auth.scopes)
    user = request.user
    if user is None or not user.is_authenticated or not user.is_active:
        return frozenset()
    if user.is_superuser:
        return frozenset(Scope.values)
    return SESSION_SCOPES | {scope for scope, perm in PERMISSION_SCOPES.items() if user.has_perm(perm)}


def required_scope(request: Request, view: APIView) -> str:
    """The scope this request needs on this view."""
    scope = getattr(view, "required_scope", None)
    if scope:
        return scope
    if request.method in SAFE_METHODS:
        return getattr(view, "read_scope", Scope.READ.value)
    return getattr(view, "write_scope", Scope.WRITE.value)


class HasScope(BasePermission):
    """An authenticated, active user whose credentials carry the scope the request needs (else 401 / 403)."""

    message = "The token lacks the scope this request needs."
    code = "scope_missing"

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if user is None or not user.is_authenticated or not user.is_active:
            return False
        needed = required_scope(request, view)
        if needed in scopes_of(request):
            return True
        self.message = f"This request needs the '{needed}' scope."
        return False


def require_unrestricted(request: Request) -> None:
    """Refuse (403) a user who sees only some channel accounts: used where the result would be out of view."""
    if not channel_scope_for_user(request.user).unrestricted:
        raise PermissionDenied(
            "Only a user who sees every channel account (permission access.view_all_channels) may do this.",
            code="restricted_user",
        )
