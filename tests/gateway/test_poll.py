"""``GET /jobs/<id>``, its ``?wait=``, and ``GET /jobs/<id>/invocations``."""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime

import pytest

import jobs
import models

JOB_FIELDS = {
    "jobId",
    "functionId",
    "status",
    "attempts",
    "maxAttempts",
    "priority",
    "idempotencyKey",
    "concurrencyKey",
    "concurrencyLimit",
    "createdAt",
    "runAt",
    "startedAt",
    "finishedAt",
    "resultJson",
    "lastError",
    "cancelRequested",
}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


def poll(client, auth, job_id: str, **query):
    return client.get(f"/jobs/{job_id}", query_string=query, headers=auth)


def test_a_pending_job_shows_every_field(client, auth, make_job):
    job = make_job(priority=5, idempotency_key="i", concurrency_key="c")

    body = poll(client, auth, job.id).get_json()

    assert set(body) == JOB_FIELDS
    assert body["jobId"] == job.id
    assert body["functionId"] == "echo"
    assert body["status"] == "PENDING"
    assert body["attempts"] == 0
    assert body["maxAttempts"] == 1
    assert body["priority"] == 5
    assert body["idempotencyKey"] == "i"
    assert body["concurrencyKey"] == "c"
    assert body["concurrencyLimit"] == 1
    assert body["startedAt"] is body["finishedAt"] is None
    assert body["resultJson"] is body["lastError"] is None
    assert body["cancelRequested"] is False


def test_times_are_iso_8601_utc(client, auth, make_job, claim_next):
    job = make_job()
    claim_next()

    body = poll(client, auth, job.id).get_json()

    for name in ("createdAt", "runAt", "startedAt"):
        assert ISO_UTC.match(body[name]), body[name]
    created = datetime.fromisoformat(body["createdAt"]).replace(tzinfo=None)
    assert created == models.Job.get_by_id(job.id).created_at


def test_a_succeeded_job_shows_its_result_as_json(client, auth, make_job, finish_next):
    job = make_job()
    result = {"sent": True, "ids": [1, 2], "note": None}
    finish_next(result=result)

    body = poll(client, auth, job.id).get_json()

    assert body["status"] == "SUCCEEDED"
    assert body["resultJson"] == result
    assert body["attempts"] == 1
    assert ISO_UTC.match(body["finishedAt"])


def test_a_result_that_is_a_string_stays_a_string(client, auth, make_job, finish_next):
    job = make_job()
    finish_next(result='{"not": "parsed"}')

    body = poll(client, auth, job.id).get_json()

    assert body["resultJson"] == '{"not": "parsed"}'


def test_a_dead_job_shows_its_last_error(client, auth, make_job, finish_next):
    job = make_job()
    finish_next(error="ValueError: bad address")

    body = poll(client, auth, job.id).get_json()

    assert body["status"] == "DEAD"
    assert body["lastError"] == "ValueError: bad address"
    assert body["resultJson"] is None


def test_the_last_error_stays_after_a_later_success(
    client, auth, make_job, finish_next
):
    job = make_job(max_attempts=2)
    finish_next(error="TimeoutError: smtp")
    finish_next(result="sent")

    body = poll(client, auth, job.id).get_json()

    assert body["status"] == "SUCCEEDED"
    assert body["lastError"] == "TimeoutError: smtp"


def test_an_unknown_job_answers_404(client, auth):
    response = poll(client, auth, "no-such-job")

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("wait", ["-1", "30.5", "31", "soon", "nan", "inf", ""])
def test_a_wait_out_of_range_answers_400(client, auth, make_job, wait):
    job = make_job()

    response = poll(client, auth, job.id, wait=wait)

    error = response.get_json()["error"]
    assert response.status_code == 400
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == ["wait"]


def cancel_later(job_id: str, delay_s: float) -> threading.Thread:
    def cancel():
        time.sleep(delay_s)
        jobs.cancel(job_id)
        models.db.close()

    thread = threading.Thread(target=cancel)
    thread.start()
    return thread


def test_a_wait_returns_as_soon_as_the_job_ends(client, auth, make_job):
    job = make_job()
    canceller = cancel_later(job.id, 0.3)
    started = time.monotonic()

    body = poll(client, auth, job.id, wait=10).get_json()

    elapsed = time.monotonic() - started
    canceller.join()
    assert body["status"] == "CANCELLED"
    assert 0.3 <= elapsed < 2


def test_a_wait_on_a_job_that_stays_pending_lasts_about_that_long(
    client, auth, make_job
):
    job = make_job()
    started = time.monotonic()

    body = poll(client, auth, job.id, wait=1).get_json()

    elapsed = time.monotonic() - started
    assert body["status"] == "PENDING"
    assert 1 <= elapsed < 2


def test_a_wait_on_a_finished_job_returns_at_once(client, auth, make_job):
    job = make_job()
    jobs.cancel(job.id)
    started = time.monotonic()

    body = poll(client, auth, job.id, wait=30).get_json()

    assert body["status"] == "CANCELLED"
    assert time.monotonic() - started < 1


def test_a_wait_of_zero_does_not_wait(client, auth, make_job):
    job = make_job()
    started = time.monotonic()

    body = poll(client, auth, job.id, wait=0).get_json()

    assert body["status"] == "PENDING"
    assert time.monotonic() - started < 1


def test_invocations_are_listed_oldest_first(client, auth, make_job, finish_next):
    job = make_job(max_attempts=2)
    finish_next(error="first try failed")
    finish_next(result=1)

    response = client.get(f"/jobs/{job.id}/invocations", headers=auth)

    invocations = response.get_json()["invocations"]
    assert response.status_code == 200
    assert [i["attempt"] for i in invocations] == [1, 2]
    assert [i["status"] for i in invocations] == ["FAILED", "SUCCEEDED"]
    assert invocations[0]["error"] == "first try failed"
    assert invocations[0]["jobId"] == job.id
    assert invocations[0]["trigger"] == "job"
    assert invocations[0]["startedAt"] <= invocations[1]["startedAt"]


def test_a_job_never_claimed_has_no_invocations(client, auth, make_job):
    job = make_job()

    response = client.get(f"/jobs/{job.id}/invocations", headers=auth)

    assert response.get_json() == {"invocations": []}


def test_invocations_of_an_unknown_job_answer_404(client, auth):
    response = client.get("/jobs/no-such-job/invocations", headers=auth)

    assert response.status_code == 404
