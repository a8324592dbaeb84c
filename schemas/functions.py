"""Schemas for function manifests, versions, layers, secrets and invoking."""

from __future__ import annotations

import json
from typing import Any

from marshmallow import (
    Schema,
    ValidationError,
    fields,
    post_dump,
    pre_dump,
    validate,
    validates_schema,
)

from schemas.common import UtcDateTime

# Function and layer ids: what goes in their URLs and on the disk.
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
SECRET_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]{0,127}$"
SECRET_NAME_RULE = (
    "1 to 128 uppercase letters, digits or '_', not starting with a digit"
)
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
HANDLER_PATTERN = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$"

MAX_SECRET_CHARS = 64 * 1024
MAX_NAMES = 32

# An attempt's memory is the limit of its address space: 64 MiB holds the
# interpreter and a few standard modules, little more.
MIN_MEMORY_MB = 64
MAX_MEMORY_MB = 4096


def _unique(names: list[str], **kwargs) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValidationError(f"named more than once: {', '.join(repeated)}")


def _names(pattern: str, what: str) -> fields.List:
    """A list of distinct names, each matching ``pattern``."""
    return fields.List(
        fields.String(validate=validate.Regexp(pattern, error=f"not a valid {what}")),
        load_default=list,
        validate=[validate.Length(max=MAX_NAMES), _unique],
    )


# A process environment cannot hold a NUL byte: refuse it up front, not when
# an attempt starts.
NO_NUL = validate.Regexp(r"^[^\x00]*$", error="must not contain a NUL character")


class ManifestSchema(Schema):
    """``function.toml``, as parsed by ``tomllib``; unknown keys fail."""

    name = fields.String(validate=validate.Regexp(ID_PATTERN, error="not a valid id"))
    handler = fields.String(
        required=True,
        validate=validate.Regexp(
            HANDLER_PATTERN, error="must be module.attribute, e.g. main.handler"
        ),
    )
    timeout = fields.Integer(
        strict=True, load_default=60, validate=validate.Range(1, 900)
    )
    memory = fields.Integer(
        strict=True,
        load_default=256,
        validate=validate.Range(MIN_MEMORY_MB, MAX_MEMORY_MB),
    )
    secrets = _names(SECRET_NAME_PATTERN, "secret name")
    layers = _names(ID_PATTERN, "layer id")
    env = fields.Dict(
        keys=fields.String(
            validate=validate.Regexp(ENV_NAME_PATTERN, error="not a variable name")
        ),
        values=fields.String(validate=NO_NUL),
        load_default=dict,
    )

    @validates_schema
    def _check_env_and_secrets(self, data, **kwargs):
        # A secret and a plain variable of the same name would shadow one
        # another in the handler's environment.
        both = sorted(set(data.get("env", {})) & set(data.get("secrets", [])))
        if both:
            raise ValidationError(
                f"both a secret and an env variable: {', '.join(both)}", "env"
            )


class VersionSchema(Schema):
    """One version of a function, as its list of versions shows it."""

    version = fields.Integer()
    sha256 = fields.String()
    created_at = UtcDateTime(data_key="createdAt")


class SettingsSchema(Schema):
    """The settings a version's manifest gives, as clients see them."""

    handler = fields.String()
    timeout = fields.Integer()
    memory = fields.Integer()
    secrets = fields.List(fields.String())
    layers = fields.List(fields.String())
    env = fields.Dict(keys=fields.String(), values=fields.String())

    @pre_dump
    def _read_manifest(self, version, **kwargs) -> dict[str, Any]:
        return json.loads(version.manifest)


class DeployedSchema(Schema):
    """A version and its settings: the answer to a deploy."""

    function_id = fields.String(data_key="functionId")
    version = fields.Integer()
    sha256 = fields.String()
    created_at = UtcDateTime(data_key="createdAt")
    settings = fields.Function(SettingsSchema().dump)

    @post_dump
    def _spread_settings(self, data, **kwargs) -> dict[str, Any]:
        settings = data.pop("settings")
        return {**data, **settings}


class FunctionSummarySchema(Schema):
    """A function in ``GET /functions``."""

    function_id = fields.String(attribute="id", data_key="functionId")
    latest_version = fields.Integer(data_key="latestVersion")
    created_at = UtcDateTime(data_key="createdAt")
    updated_at = UtcDateTime(data_key="updatedAt")


class LayerSchema(Schema):
    """A layer, without its archive."""

    name = fields.String()
    version = fields.Integer()
    sha256 = fields.String()
    created_at = UtcDateTime(data_key="createdAt")
    updated_at = UtcDateTime(data_key="updatedAt")


class SecretSchema(Schema):
    """A secret's name and times; its value never leaves the gateway."""

    name = fields.String()
    created_at = UtcDateTime(data_key="createdAt")
    updated_at = UtcDateTime(data_key="updatedAt")


class SecretValueSchema(Schema):
    """The body of ``PUT /secrets/<name>``."""

    value = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=MAX_SECRET_CHARS), NO_NUL],
    )


class InvokeSchema(Schema):
    """The body of ``POST /functions/<id>/invoke``; unknown fields fail."""

    event = fields.Raw(allow_none=True, load_default=dict)
