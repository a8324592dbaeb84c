"""Schemas for enqueueing, reading and listing jobs and their invocations."""

from __future__ import annotations

from datetime import timedelta

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from models import JobStatus, utcnow
from schemas.common import JsonText, StrictFloat, UtcDateTime, as_naive_utc

MAX_DELAY_S = 7 * 24 * 3600
KEY_LENGTH = validate.Length(min=1, max=255)
# A job id, which is also what a page's ``nextCursor`` holds.
JOB_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class EnqueueSchema(Schema):
    """The body of ``POST /functions/<id>/invoke-async``; unknown fields fail."""

    event = fields.Raw(allow_none=True, load_default=dict)
    max_attempts = fields.Integer(
        data_key="maxAttempts",
        strict=True,
        load_default=1,
        validate=validate.Range(1, 100),
    )
    idempotency_key = fields.String(data_key="idempotencyKey", validate=KEY_LENGTH)
    concurrency_key = fields.String(data_key="concurrencyKey", validate=KEY_LENGTH)
    concurrency_limit = fields.Integer(
        data_key="concurrencyLimit", strict=True, validate=validate.Range(1, 1000)
    )
    priority = fields.Integer(
        strict=True, load_default=0, validate=validate.Range(-1000, 1000)
    )
    delay_seconds = StrictFloat(
        data_key="delaySeconds",
        allow_nan=False,
        validate=validate.Range(0, MAX_DELAY_S),
    )
    run_at = fields.AwareDateTime(data_key="runAt", format="iso")

    @validates_schema
    def _check_combinations(self, data, **kwargs):
        if "concurrency_limit" in data and "concurrency_key" not in data:
            raise ValidationError(
                "concurrencyLimit needs a concurrencyKey", "concurrencyLimit"
            )
        if "delay_seconds" in data and "run_at" in data:
            raise ValidationError(
                "give either runAt or delaySeconds, not both", "runAt"
            )
        if "run_at" in data:
            run_at = as_naive_utc(data["run_at"])
            if run_at > utcnow() + timedelta(seconds=MAX_DELAY_S):
                raise ValidationError("runAt is more than 7 days ahead", "runAt")


class JobSchema(Schema):
    """A job as clients see it."""

    job_id = fields.String(attribute="id", data_key="jobId")
    function_id = fields.String(data_key="functionId")
    status = fields.String()
    attempts = fields.Integer()
    max_attempts = fields.Integer(data_key="maxAttempts")
    priority = fields.Integer()
    idempotency_key = fields.String(data_key="idempotencyKey")
    concurrency_key = fields.String(data_key="concurrencyKey")
    concurrency_limit = fields.Integer(data_key="concurrencyLimit")
    created_at = UtcDateTime(data_key="createdAt")
    run_at = UtcDateTime(data_key="runAt")
    started_at = UtcDateTime(data_key="startedAt")
    finished_at = UtcDateTime(data_key="finishedAt")
    result_json = JsonText(attribute="result", data_key="resultJson")
    last_error = fields.String(data_key="lastError")
    cancel_requested = fields.Boolean(data_key="cancelRequested")


class JobListQuery(Schema):
    """The query string of ``GET /jobs``."""

    status = fields.String(validate=validate.OneOf([s.value for s in JobStatus]))
    function_id = fields.String(data_key="functionId", validate=KEY_LENGTH)
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    cursor = fields.String(
        validate=validate.Regexp(JOB_ID, error="Not a cursor this API returned.")
    )


class WaitQuery(Schema):
    """The query string of ``GET /jobs/<id>``."""

    wait = fields.Float(load_default=0, allow_nan=False, validate=validate.Range(0, 30))


class InvocationSchema(Schema):
    """The record of one attempt or synchronous call."""

    invocation_id = fields.String(attribute="id", data_key="invocationId")
    function_id = fields.String(data_key="functionId")
    version = fields.Integer()
    trigger = fields.String()
    job_id = fields.String(attribute="job_id", data_key="jobId")
    attempt = fields.Integer()
    status = fields.String()
    worker_id = fields.String(data_key="workerId")
    started_at = UtcDateTime(data_key="startedAt")
    finished_at = UtcDateTime(data_key="finishedAt")
    duration_ms = fields.Float(data_key="durationMs")
    error = fields.String()
    traceback = fields.String()
    logs = fields.String()
    exit_code = fields.Integer(data_key="exitCode")
    peak_memory_kb = fields.Integer(data_key="peakMemoryKb")
