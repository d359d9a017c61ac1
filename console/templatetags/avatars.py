"""`{% load avatars %}{% avatar identity %}`: a round badge with the identity's initials, covered by its picture
(through the proxy, `console:avatar`) when it has one. A picture that fails to load is removed by console.js,
uncovering the initials."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import format_html

from console.selectors.customers import initials

register = template.Library()


@register.simple_tag
def avatar(identity: Any, size: str = "md") -> str:
    """The badge's HTML (built here rather than by an included template: an inbox page renders 50 of them)."""
    name = getattr(identity, "display_name", "") or getattr(identity, "handle", "") or ""
    size = size if size in ("sm", "md", "lg") else "md"
    picture = ""
    if getattr(identity, "avatar_url", "") and getattr(identity, "pk", None) is not None:
        picture = format_html('<img src="{}" alt="" loading="lazy" decoding="async" data-avatar>',
                              reverse("console:avatar", args=[identity.pk]))
    return format_html('<span class="avatar avatar-{}" aria-hidden="true"><span class="avatar-initials">{}</span>{}'
                       "</span>", size, initials(name), picture)
