"""Errand's exceptions: one base, shallow subclasses, one HTTP envelope.

Each class names the HTTP status and the machine-readable ``code`` that the
gateway's single error handler puts in ``{"error": {...}}``.
"""

from __future__ import annotations


class ErrandError(Exception):
    """Base of every error Errand raises on purpose."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, fields: dict | None = None, **extra):
        super().__init__(message)
        self.message = message
        self.fields = fields
        self.extra = extra

    def envelope(self) -> dict:
        """The body the gateway answers with."""
        error = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        error.update(self.extra)
        return {"error": error}


class ConfigError(ErrandError):
    """Raised at start-up when a setting does not parse or is out of range."""

    code = "config_error"


class ValidationFailed(ErrandError):
    """Raised when a request's body or query does not validate."""

    status = 400
    code = "validation_error"


class BadRequest(ErrandError):
    """Raised when a request body is not what the route reads (not JSON)."""

    status = 400
    code = "bad_request"


class InvalidPackage(ErrandError):
    """Raised when a deployed archive or its manifest is refused."""

    status = 400
    code = "invalid_package"


class Unauthorized(ErrandError):
    """Raised when a request carries no API key or an unknown one."""

    status = 401
    code = "unauthorized"


class NotFound(ErrandError):
    """Raised when a function, job, layer, secret or route does not exist."""

    status = 404
    code = "not_found"


class MethodNotAllowed(ErrandError):
    """Raised when a route exists but not for the request's method."""

    status = 405
    code = "method_not_allowed"


class Conflict(ErrandError):
    """Raised when a job is not in a state that allows the operation."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ErrandError):
    """Raised when a request body is over its size limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ErrandError):
    """Raised when a request body has the wrong content type."""

    status = 415
    code = "unsupported_media_type"


class FunctionFailed(ErrandError):
    """Raised when a synchronous invocation's handler fails or crashes."""

    status = 502
    code = "function_error"


class FunctionTimedOut(FunctionFailed):
    """Raised when a synchronous invocation runs past its timeout."""

    code = "function_timeout"
