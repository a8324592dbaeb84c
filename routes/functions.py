"""Functions, layers and secrets over HTTP, and the synchronous call."""

from __future__ import annotations

import logging
import re

from flask import Blueprint, Response, jsonify, request

import models
from app import current_settings, read_body, read_json_object
from errors import (
    FunctionFailed,
    FunctionTimedOut,
    NotFound,
    UnsupportedMediaType,
    ValidationFailed,
)
from models import (
    Function,
    FunctionVersion,
    Invocation,
    InvocationStatus,
    Layer,
    Secret,
    utcnow,
)
from runtime import invoke, packages, secretbox
from schemas.common import load
from schemas.functions import (
    MAX_SECRET_CHARS,
    SECRET_NAME_PATTERN,
    SECRET_NAME_RULE,
    DeployedSchema,
    FunctionSummarySchema,
    InvokeSchema,
    LayerSchema,
    SecretSchema,
    SecretValueSchema,
    SettingsSchema,
    VersionSchema,
)
from schemas.jobs import InvocationSchema

logger = logging.getLogger(__name__)

bp = Blueprint("functions", __name__)

ZIP = "application/zip"

# A secret's body is its value, JSON-escaped, inside a small object.
MAX_SECRET_BODY_BYTES = 8 * MAX_SECRET_CHARS

_SECRET_NAME = re.compile(SECRET_NAME_PATTERN)


def read_archive() -> bytes:
    """The request body as a zip archive, with the envelope's errors if not."""
    if request.mimetype != ZIP:
        raise UnsupportedMediaType(f"the request body must be {ZIP}")
    return read_body(packages.MAX_ARCHIVE_BYTES)


def created_or_ok(body: dict, created: bool) -> tuple[Response, int]:
    """201 for what the request made new, 200 for what it found as it was."""
    return jsonify({**body, "created": created}), 201 if created else 200


@bp.put("/functions/<function_id>")
def deploy_function(function_id: str):
    version, created = packages.deploy_function(function_id, read_archive())
    return created_or_ok(DeployedSchema().dump(version), created)


@bp.get("/functions")
def list_functions():
    rows = Function.select().order_by(Function.id)
    return jsonify({"functions": FunctionSummarySchema(many=True).dump(rows)})


@bp.get("/functions/<function_id>")
def get_function(function_id: str):
    current = packages.current_version(function_id)
    versions = (
        FunctionVersion.select(
            FunctionVersion.version,
            FunctionVersion.sha256,
            FunctionVersion.created_at,
        )
        .where(FunctionVersion.function == function_id)
        .order_by(FunctionVersion.version)
    )
    return jsonify(
        {
            **FunctionSummarySchema().dump(current.function),
            **SettingsSchema().dump(current),
            "versions": VersionSchema(many=True).dump(versions),
        }
    )


@bp.delete("/functions/<function_id>")
def delete_function(function_id: str):
    packages.delete_function(function_id)
    return "", 204


@bp.post("/functions/<function_id>/invoke")
def invoke_function(function_id: str):
    config = current_settings()
    body = load(InvokeSchema(), read_json_object(config.max_event_bytes))

    # TODO: stop the attempt when the client hangs up; until then it runs
    # to its end or its timeout, holding a gateway thread all the while.
    outcome, invocation = invoke.invoke_sync(function_id, body["event"], config)
    if outcome.status == InvocationStatus.SUCCEEDED:
        return jsonify(
            {
                "result": outcome.result,
                "durationMs": round(outcome.duration_ms, 3),
                "invocationId": invocation.id,
            }
        )

    error = FunctionFailed
    if outcome.status == InvocationStatus.TIMED_OUT:
        error = FunctionTimedOut
    raise error(
        outcome.error or "the function failed",
        errorType=outcome.error_type,
        invocationId=invocation.id,
    )


@bp.get("/invocations/<invocation_id>")
def get_invocation(invocation_id: str):
    invocation = Invocation.get_or_none(Invocation.id == invocation_id)
    if invocation is None:
        raise NotFound(f"no invocation {invocation_id!r}")
    return jsonify(InvocationSchema().dump(invocation))


@bp.put("/layers/<name>")
def deploy_layer(name: str):
    layer, created = packages.deploy_layer(name, read_archive())
    return created_or_ok(LayerSchema().dump(layer), created)


@bp.get("/layers")
def list_layers():
    rows = Layer.select(
        Layer.name,
        Layer.version,
        Layer.sha256,
        Layer.created_at,
        Layer.updated_at,
    ).order_by(Layer.name)
    return jsonify({"layers": LayerSchema(many=True).dump(rows)})


@bp.delete("/layers/<name>")
def delete_layer(name: str):
    packages.delete_layer(name)
    return "", 204


@bp.put("/secrets/<name>")
def set_secret(name: str):
    if not _SECRET_NAME.match(name):
        raise ValidationFailed(
            f"{name!r} is not a valid secret name", {"name": SECRET_NAME_RULE}
        )
    body = load(SecretValueSchema(), read_json_object(MAX_SECRET_BODY_BYTES))
    ciphertext = secretbox.encrypt(body["value"], current_settings())

    with models.write_transaction():
        secret = Secret.get_or_none(Secret.name == name)
        created = secret is None
        if created:
            secret = Secret.create(name=name, ciphertext=ciphertext)
        else:
            secret.ciphertext = ciphertext
            secret.updated_at = utcnow()
            secret.save()

    action = "secret_created" if created else "secret_replaced"
    logger.info("secret %s set", name, extra={"action": action, "secret": name})
    return created_or_ok(SecretSchema().dump(secret), created)


@bp.get("/secrets")
def list_secrets():
    rows = Secret.select(Secret.name, Secret.created_at, Secret.updated_at).order_by(
        Secret.name
    )
    return jsonify({"secrets": SecretSchema(many=True).dump(rows)})


@bp.delete("/secrets/<name>")
def delete_secret(name: str):
    if not Secret.delete().where(Secret.name == name).execute():
        raise NotFound(f"no secret {name!r}")
    logger.info(
        "secret %s deleted", name, extra={"action": "secret_deleted", "secret": name}
    )
    return "", 204
