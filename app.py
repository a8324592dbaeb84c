"""The HTTP gateway: the app factory, authentication and the error envelope.

Routes live in ``routes/``; this module wires them, checks every request's
API key, and turns every error, expected or not, into one JSON envelope.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from typing import Any

import peewee as pw
from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

import models
import settings as settings_module
from errors import (
    BadRequest,
    ErrandError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from settings import Settings

logger = logging.getLogger(__name__)

PUBLIC_ENDPOINTS = frozenset({"health.healthz"})

KEY_BYTES = 32

# Werkzeug's own HTTP errors, spoken in the envelope's vocabulary.
HTTP_ERRORS = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    500: ErrandError,
}


def create_app(config: Settings | None = None) -> Flask:
    """Build the gateway for ``config`` (read from the environment if absent)."""
    config = config or settings_module.load()
    models.connect(config.database_url)

    app = Flask(__name__)
    app.config["ERRAND"] = config
    app.json.sort_keys = False

    from routes import functions, health, jobs

    app.register_blueprint(health.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(functions.bp)

    app.before_request(authenticate)
    app.before_request(refuse_unknown_query)
    app.register_error_handler(ErrandError, render_error)
    app.register_error_handler(HTTPException, render_http_error)
    app.register_error_handler(Exception, render_unexpected_error)
    return app


def current_settings() -> Settings:
    """The settings of the app serving this request."""
    return current_app.config["ERRAND"]


def new_api_key() -> str:
    """A fresh API key: 256 random bits, with a prefix that says what it is."""
    return "errand_" + secrets.token_urlsafe(KEY_BYTES)


def hash_key(key: str) -> str:
    """How API keys are stored: the hex sha256 of the key."""
    return hashlib.sha256(key.encode()).hexdigest()


def authenticate() -> None:
    """Refuse any request without a known bearer key, bar the public ones."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return

    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("an API key is required: Authorization: Bearer <key>")

    bootstrap = current_settings().api_key
    if bootstrap and hmac.compare_digest(key.encode(), bootstrap.encode()):
        g.key_name = "bootstrap"
        return

    digest = hash_key(key)
    stored = models.ApiKey.get_or_none(models.ApiKey.key_hash == digest)
    if stored is None or not hmac.compare_digest(stored.key_hash, digest):
        raise Unauthorized("the API key is not valid")
    g.key_name = stored.name


# The routes that read a query string; they validate it with their schema.
QUERY_ENDPOINTS = frozenset({"jobs.get_job", "jobs.list_jobs"})


def refuse_unknown_query() -> None:
    """A query string on a route that reads none is refused, not ignored."""
    if request.args and request.endpoint not in QUERY_ENDPOINTS:
        raise ValidationFailed(
            "this route takes no query parameters",
            {name: "Unknown parameter." for name in request.args},
        )


def refuse_body() -> None:
    """For routes that take no body: one sent anyway is refused, not ignored."""
    request.max_content_length = 1
    if request.content_length or request.get_data(cache=True):
        raise BadRequest("this route takes no request body")


def render_error(error: ErrandError) -> tuple[Response, int]:
    response = jsonify(error.envelope())
    if isinstance(error, Unauthorized):
        response.headers["WWW-Authenticate"] = "Bearer"
    return response, error.status


def render_http_error(error: HTTPException) -> tuple[Response, int]:
    status = error.code or 500
    cls = HTTP_ERRORS.get(status)
    if cls is None:
        wrapped = ErrandError(error.description or error.name)
        wrapped.status = status
        wrapped.code = error.name.lower().replace(" ", "_")
    else:
        wrapped = cls(_http_message(status, error))
    response, status = render_error(wrapped)
    if status == 405 and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response, status


def _http_message(status: int, error: HTTPException) -> str:
    if status == 404:
        return f"no route for {request.method} {request.path}"
    if status == 405:
        return f"{request.method} is not allowed on {request.path}"
    return error.description or error.name


def render_unexpected_error(error: Exception) -> tuple[Response, int]:
    logger.exception("unhandled error on %s %s", request.method, request.path)
    if isinstance(error, pw.DatabaseError):
        # This thread's connection may be broken (a database restart, say):
        # drop it, and the next request on the thread connects afresh.
        models.db.close()
    return render_error(ErrandError("internal error; the gateway's log has details"))


def read_body(limit: int) -> bytes:
    """The raw request body, refused with 413 when over ``limit`` bytes."""
    too_large = PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large

    # A body without a length (chunked) is cut at the maximum, not refused;
    # reading one byte past the limit tells a body over it from one that fits.
    request.max_content_length = limit + 1
    body = request.get_data(cache=True)
    if len(body) > limit:
        raise too_large
    return body


def read_json_object(limit: int) -> dict[str, Any]:
    """The request body as a JSON object, with the envelope's errors if not.

    An empty body counts as ``{}``: every field of every body is optional.
    """
    if request.mimetype != "application/json" and (
        request.content_length or request.mimetype
    ):
        raise UnsupportedMediaType("the request body must be application/json")
    raw = read_body(limit)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")
