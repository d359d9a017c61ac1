"""Registry of platform adapters: platform name -> adapter class, imported on first use."""

from __future__ import annotations

import importlib

from .base import BaseAdapter

_ADAPTERS = {
    "x": "channels.adapters.x.XAdapter",
    "facebook": "channels.adapters.facebook.FacebookAdapter",
    "instagram": "channels.adapters.instagram.InstagramAdapter",
    "whatsapp": "channels.adapters.whatsapp.WhatsAppAdapter",
    "email": "channels.adapters.mail.EmailAdapter",
    "telegram": "channels.adapters.telegram.TelegramAdapter",
    "mastodon": "channels.adapters.mastodon.MastodonAdapter",
    "demo": "channels.adapters.demo.DemoAdapter",
}


def adapter_class(platform: str) -> type[BaseAdapter]:
    """The adapter class for `platform`; KeyError when there is none."""
    module_name, _, class_name = _ADAPTERS[platform].rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def platforms() -> list[str]:
    return sorted(_ADAPTERS)
