"""Filters the apps' FilterSets share: ids that always fit a bigint, datetimes that always fit PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django import forms
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field

MAX_ID = 2**63 - 1


def _refuse_empty(value: Any) -> None:
    """A parameter given with no value (`?x=`) is bad input, not an absent filter."""
    if value == "":
        raise forms.ValidationError("Give a value or leave the parameter out.", code="empty")


class IdField(forms.IntegerField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> int | None:
        _refuse_empty(value)
        return super().to_python(value)


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdFilter(django_filters.NumberFilter):
    """An integer id (1 .. 2**63-1); an id the caller may not see simply matches nothing."""

    field_class = IdField


class AwareDateTimeField(forms.DateTimeField):
    """An ISO 8601 date-time within years 1..9999 after conversion to UTC; naive values are in UTC."""

    input_formats = ["iso-8601"]

    def to_python(self, value: Any) -> dt.datetime | None:
        _refuse_empty(value)
        try:
            parsed = super().to_python(value)
        except OverflowError:
            raise forms.ValidationError("Enter a valid date/time.", code="invalid") from None
        if parsed is None:
            return None
        if timezone.is_naive(parsed):
            parsed = parsed.replace(tzinfo=dt.UTC)
        try:
            return parsed.astimezone(dt.UTC)
        except OverflowError:
            raise forms.ValidationError("Enter a valid date/time.", code="invalid") from None


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time (see AwareDateTimeField)."""

    field_class = AwareDateTimeField


class StrictBooleanField(forms.Field):
    """`true` or `false` (also `True`/`False`, `1`/`0`); anything else is a 400."""

    _values = {"true": True, "1": True, "false": False, "0": False}

    def to_python(self, value: Any) -> bool | None:
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        try:
            return self._values[str(value).lower()]
        except KeyError:
            raise forms.ValidationError("Must be true or false.", code="invalid") from None


@extend_schema_field({"type": "boolean"})
class BooleanFilter(django_filters.BooleanFilter):
    """A boolean query parameter that refuses anything but true / false."""

    field_class = StrictBooleanField


class StrictChoiceField(django_filters.fields.ChoiceField):
    def clean(self, value: Any) -> Any:
        _refuse_empty(value)  # the raw value: None when the parameter is absent, "" when given empty
        return super().clean(value)


class ChoiceFilter(django_filters.ChoiceFilter):
    """One of the choices; an empty value is a 400, not "no filter"."""

    field_class = StrictChoiceField
