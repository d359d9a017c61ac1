"""Bases for the apps' input serializers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.validators import RegexValidator
from rest_framework import serializers


class InputSerializer(serializers.Serializer):
    """A plain input serializer that refuses fields it does not know (a 400 naming them), so a typo or a
    field the client may not set (`id`, `merged_into`, credentials in the wrong place) is never silently
    dropped. Input serializers validate shape only and are never used for output."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A string, and only a string: a JSON number or boolean is refused, not turned into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)  # before trimming, as the schema says
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean, and only that: 0, 1, "true" or "yes" are refused."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, and only that: "12", 12.0 or true are refused."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class TagField(StrictCharField):
    """A short label: 1-64 characters, no control characters, trimmed."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("validators", [RegexValidator(r"^[^\x00-\x1f\x7f]*$",
                                                        "Must not contain control characters.")])
        super().__init__(**kwargs)


def _walk_json(value: Any, depth: int = 0) -> None:
    if depth > 10:
        raise serializers.ValidationError("Nested too deeply (at most 10 levels).")
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError("Strings must not contain NUL characters.")
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk_json(key, depth + 1)
            _walk_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _walk_json(item, depth + 1)


class JSONObjectField(serializers.DictField):
    """A JSON object that PostgreSQL can store as jsonb: no NUL characters, at most 10 levels, 100 keys."""

    def to_internal_value(self, data: Any) -> dict:
        value = super().to_internal_value(data)
        if len(value) > 100:
            raise serializers.ValidationError("At most 100 keys.")
        _walk_json(value)
        return value


class SecretObjectField(serializers.DictField):
    """A write-only JSON object of strings (API tokens, webhook secrets): never rendered."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("child", StrictCharField(max_length=4096, allow_blank=True, trim_whitespace=False))
        kwargs.setdefault("write_only", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict:
        value = super().to_internal_value(data)
        if len(value) > 20:
            raise serializers.ValidationError("At most 20 keys.")
        if any(not key or len(key) > 100 or "\x00" in key for key in value):
            raise serializers.ValidationError("Keys must be 1-100 characters without NUL.")
        return value
