"""Encryption at rest for secrets kept in the database (channel tokens, webhook secrets).

Values are encrypted with Fernet (AES-128-CBC + HMAC-SHA256). Keys come from
`settings.FIELD_ENCRYPTION_KEYS`: the first encrypts, every key decrypts, so a key can be rotated by
putting a new one first and re-saving rows.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@functools.cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys or any(len(k) < 32 for k in keys):
        raise ImproperlyConfigured("DJANGO_FIELD_ENCRYPTION_KEYS needs one or more keys of 32+ characters")
    # Any long string is accepted as a key: it is stretched to the 32 bytes Fernet wants.
    return MultiFernet([Fernet(base64.urlsafe_b64encode(hashlib.sha256(k.encode()).digest())) for k in keys])


def encrypt(plaintext: str) -> str:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS)).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS)).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured("a stored secret cannot be decrypted with DJANGO_FIELD_ENCRYPTION_KEYS") from exc


class EncryptedJSONField(models.TextField):
    """A JSON value (usually a dict of secrets) stored encrypted. The column holds only ciphertext."""

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return encrypt(json.dumps(value, sort_keys=True))

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        if value is None:
            return None
        return json.loads(decrypt(value))

    def to_python(self, value: Any) -> Any:
        return value

    def get_lookup(self, lookup_name: str):  # noqa: ANN201 - Django API
        if lookup_name != "isnull":
            return None  # ciphertext is not searchable
        return super().get_lookup(lookup_name)
