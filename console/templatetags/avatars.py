"""`{% load avatars %}{% avatar identity %}`: a round badge with the identity's initials, covered by its picture
(through the proxy, `console:avatar`) when it has one. A picture that fails to load is removed by console.js,
uncovering the initials."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

register = template.Library()


def initials(name: str) -> str:
    """Up to two letters for `name`: "Anna Berg" -> "AB", "@ab_c" -> "A", "" -> "?"."""
    words = [w for w in name.replace("@", " ").replace("_", " ").split() if w[:1].isalnum()]
    letters = "".join(w[0] for w in words[:2]).upper()
    return letters or "?"


@register.inclusion_tag("console/partials/avatar.html")
def avatar(identity: Any, size: str = "md") -> dict[str, Any]:
    name = getattr(identity, "display_name", "") or getattr(identity, "handle", "") or ""
    has_picture = bool(getattr(identity, "avatar_url", "")) and getattr(identity, "pk", None) is not None
    return {
        "initials": initials(name),
        "src": reverse("console:avatar", args=[identity.pk]) if has_picture else "",
        "size": size if size in ("sm", "md", "lg") else "md",
    }
