"""Background jobs over HTTP: enqueue, poll, list, requeue, cancel."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify, request, url_for

import jobs
from app import current_settings, read_json_object, refuse_body
from models import Invocation, Job, JobStatus
from schemas.common import as_naive_utc, load
from schemas.jobs import (
    EnqueueSchema,
    InvocationSchema,
    JobListQuery,
    JobSchema,
    WaitQuery,
)

bp = Blueprint("jobs", __name__)

job_schema = JobSchema()
jobs_schema = JobSchema(many=True)
invocation_schema = InvocationSchema(many=True)

# How often a ``?wait=`` poll looks at the job again.
WAIT_STEP_S = 0.1


@bp.post("/functions/<function_id>/invoke-async")
def enqueue(function_id: str):
    body = read_json_object(current_settings().max_event_bytes)
    params = load(EnqueueSchema(), body)

    if "run_at" in params:
        params["run_at"] = as_naive_utc(params["run_at"])

    job, created = jobs.enqueue(function_id, **params)
    body = {"jobId": job.id, "status": job.status, "deduplicated": not created}
    if not created:
        return jsonify(body), 200
    response = jsonify(body)
    response.headers["Location"] = url_for("jobs.get_job", job_id=job.id)
    return response, 202


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    wait_s = load(WaitQuery(), request.args, "query string")["wait"]
    job = jobs.get(job_id)

    deadline = time.monotonic() + wait_s
    while not JobStatus(job.status).terminal and time.monotonic() < deadline:
        time.sleep(min(WAIT_STEP_S, max(deadline - time.monotonic(), 0)))
        job = jobs.get(job_id)
    return jsonify(job_schema.dump(job))


@bp.get("/jobs/<job_id>/invocations")
def list_invocations(job_id: str):
    jobs.get(job_id)
    rows = (
        Invocation.select()
        .where(Invocation.job == job_id)
        .order_by(Invocation.started_at, Invocation.id)
    )
    return jsonify({"invocations": invocation_schema.dump(rows)})


@bp.get("/jobs")
def list_jobs():
    query = load(JobListQuery(), request.args, "query string")
    limit = query["limit"]

    rows = Job.select().order_by(Job.id.desc()).limit(limit + 1)
    if "status" in query:
        rows = rows.where(Job.status == query["status"])
    if "function_id" in query:
        rows = rows.where(Job.function_id == query["function_id"])
    if "cursor" in query:
        rows = rows.where(Job.id < query["cursor"])

    page = list(rows)
    more = len(page) > limit
    page = page[:limit]
    return jsonify(
        {
            "jobs": jobs_schema.dump(page),
            "nextCursor": page[-1].id if more else None,
        }
    )


@bp.post("/jobs/<job_id>/requeue")
def requeue(job_id: str):
    refuse_body()
    return jsonify(job_schema.dump(jobs.requeue(job_id)))


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id: str):
    refuse_body()
    return jsonify(job_schema.dump(jobs.cancel(job_id)))
