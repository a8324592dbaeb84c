"""``POST /jobs/<id>/requeue`` and ``POST /jobs/<id>/cancel``."""

from __future__ import annotations

from datetime import timedelta

import pytest

import jobs
import models
from models import utcnow


def claim_all() -> list[jobs.Claim]:
    return jobs.claim("another-worker", 10, 60.0)


def requeue(client, auth, job_id: str):
    return client.post(f"/jobs/{job_id}/requeue", headers=auth)


def cancel(client, auth, job_id: str):
    return client.post(f"/jobs/{job_id}/cancel", headers=auth)


@pytest.fixture
def job_in(make_job, claim_next, finish_next):
    """A job brought to ``status`` through the verbs."""

    def make(status: str):
        job = make_job()
        if status == "RUNNING":
            claim_next()
        elif status == "SUCCEEDED":
            finish_next(result="done")
        elif status == "DEAD":
            finish_next(error="it broke")
        elif status == "CANCELLED":
            jobs.cancel(job.id)
        return job

    return make


def test_a_dead_job_requeues_with_a_fresh_budget(client, auth, make_job, finish_next):
    job = make_job(max_attempts=2)
    finish_next(error="first")
    finish_next(error="second")

    response = requeue(client, auth, job.id)

    body = response.get_json()
    assert response.status_code == 200
    assert body["status"] == "PENDING"
    assert body["attempts"] == 0
    assert body["maxAttempts"] == 2
    assert body["finishedAt"] is None


def test_a_requeued_job_keeps_its_earlier_invocations(
    client, auth, make_job, finish_next
):
    job = make_job()
    finish_next(error="it broke")
    requeue(client, auth, job.id)

    finish_next(result="fixed")

    invocations = client.get(f"/jobs/{job.id}/invocations", headers=auth)
    attempts = [(i["attempt"], i["status"]) for i in invocations.json["invocations"]]
    assert attempts == [(1, "FAILED"), (1, "SUCCEEDED")]


def test_a_requeued_job_is_claimed_again(client, auth, job_in):
    job = job_in("DEAD")

    requeue(client, auth, job.id)

    (claim,) = claim_all()
    assert claim.job.id == job.id
    assert claim.attempt == 1


def test_a_cancelled_job_can_be_requeued(client, auth, job_in):
    job = job_in("CANCELLED")

    response = requeue(client, auth, job.id)

    assert response.status_code == 200
    assert response.get_json()["status"] == "PENDING"


def test_a_job_stopped_while_running_requeues_without_its_cancel_request(
    client, auth, make_job, claim_next, make_outcome
):
    job = make_job()
    claim = claim_next()
    cancel(client, auth, job.id)
    jobs.stop(claim, make_outcome(), 1)

    response = requeue(client, auth, job.id)

    assert response.get_json()["status"] == "PENDING"
    assert response.get_json()["cancelRequested"] is False


@pytest.mark.parametrize("status", ["PENDING", "RUNNING", "SUCCEEDED"])
def test_only_dead_or_cancelled_jobs_can_be_requeued(client, auth, job_in, status):
    job = job_in(status)

    response = requeue(client, auth, job.id)

    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "conflict"
    assert client.get(f"/jobs/{job.id}", headers=auth).json["status"] == status


def test_a_pending_job_is_cancelled_and_never_claimed(client, auth, job_in):
    job = job_in("PENDING")

    response = cancel(client, auth, job.id)

    body = response.get_json()
    assert response.status_code == 200
    assert body["status"] == "CANCELLED"
    assert body["finishedAt"] is not None
    assert claim_all() == []


def test_a_delayed_job_is_cancelled_and_never_claimed(client, auth, make_job):
    job = make_job(run_at=utcnow() + timedelta(milliseconds=50))

    cancel(client, auth, job.id)

    assert claim_all() == []


def test_a_running_job_is_only_asked_to_cancel(client, auth, job_in):
    job = job_in("RUNNING")

    response = cancel(client, auth, job.id)

    body = response.get_json()
    assert response.status_code == 200
    assert body["status"] == "RUNNING"
    assert body["cancelRequested"] is True
    assert jobs.cancel_requested([job.id]) == {job.id}


def test_asking_a_running_job_to_cancel_twice_is_harmless(client, auth, job_in):
    job = job_in("RUNNING")
    cancel(client, auth, job.id)

    response = cancel(client, auth, job.id)

    assert response.status_code == 200
    assert response.get_json()["cancelRequested"] is True


def read_stale_first(monkeypatch, job_id: str) -> None:
    """The next read of the job sees it as it is now, whatever happens next.

    This is what a database whose reads take no write lock can show a
    cancel while a worker claims or settles the job.
    """
    stale, read = models.Job.get_by_id(job_id), jobs.get
    reads = iter([stale])
    monkeypatch.setattr(jobs, "get", lambda job_id: next(reads, None) or read(job_id))


def test_a_cancel_that_loses_a_race_to_a_claim_asks_the_job_to_stop(
    client, auth, make_job, claim_next, monkeypatch
):
    job = make_job()
    read_stale_first(monkeypatch, job.id)
    claim_next()

    response = cancel(client, auth, job.id)

    assert response.status_code == 200
    assert response.get_json()["status"] == "RUNNING"
    assert response.get_json()["cancelRequested"] is True


def test_a_cancel_that_loses_a_race_to_the_end_of_the_job_conflicts(
    client, auth, make_job, finish_next, monkeypatch
):
    job = make_job()
    read_stale_first(monkeypatch, job.id)
    finish_next(result="done")

    response = cancel(client, auth, job.id)

    assert response.status_code == 409
    assert "SUCCEEDED" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("status", ["SUCCEEDED", "DEAD", "CANCELLED"])
def test_a_finished_job_cannot_be_cancelled(client, auth, job_in, status):
    job = job_in(status)

    response = cancel(client, auth, job.id)

    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "conflict"
    assert client.get(f"/jobs/{job.id}", headers=auth).json["status"] == status


@pytest.mark.parametrize("action", ["requeue", "cancel"])
def test_operating_on_an_unknown_job_answers_404(client, auth, action):
    response = client.post(f"/jobs/no-such-job/{action}", headers=auth)

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
