"""Fields and helpers shared by every schema.

Request fields are strict: a number must be a JSON number, never a string
that looks like one. Times go out as ISO-8601 UTC with a ``Z``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields

from errors import ValidationFailed
from models import iso_utc


class StrictFloat(fields.Float):
    """A JSON number (integer or not), never a string or a boolean."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class UtcDateTime(fields.Field):
    """Dumps a naive UTC ``datetime`` as ``2026-01-02T03:04:05.678901Z``."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return iso_utc(value)


class JsonText(fields.Field):
    """Dumps a column that holds JSON text as the JSON value it holds."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else json.loads(value)


def as_naive_utc(value: datetime) -> datetime:
    """An aware ``datetime`` as the naive UTC form the tables store."""
    return value.astimezone(UTC).replace(tzinfo=None)


def load(schema: Schema, data: Any, what: str = "request body") -> dict:
    """Validate ``data`` with ``schema``, or raise the envelope's 400.

    A query string (a multi-dict) may give each parameter once only.
    """
    if hasattr(data, "getlist"):
        repeated = {
            name: "Give this parameter once."
            for name in data
            if len(data.getlist(name)) > 1
        }
        if repeated:
            raise ValidationFailed(f"the {what} is not valid", repeated)
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ValidationFailed(
            f"the {what} is not valid", _flatten(exc.messages)
        ) from None


def _flatten(messages: Any) -> dict[str, str]:
    """Marshmallow's nested messages as one sentence per field name."""
    if not isinstance(messages, dict):
        return {"_schema": " ".join(map(str, messages))}
    flat = {}
    for name, value in messages.items():
        if isinstance(value, dict):
            value = " ".join(f"{k}: {v}" for k, v in _flatten(value).items())
        elif isinstance(value, list):
            value = " ".join(map(str, value))
        flat[str(name)] = str(value)
    return flat
