"""The job verbs the worker uses, on a temporary database, without processes."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

import jobs
import models
from models import Invocation, Job, utcnow
from runtime.backoff import retry_delay_s


@pytest.fixture
def db(tmp_path):
    database = models.connect(f"sqlite:///{tmp_path}/errand.db")
    models.Function.create(id="fn")
    yield database
    database.close()


def outcome(status="FAILED", error="ValueError: no"):
    now = utcnow()
    return SimpleNamespace(
        status=models.InvocationStatus(status),
        result={"ok": True},
        error=error,
        traceback=None,
        logs="",
        exit_code=1,
        peak_memory_kb=None,
        finished_at=now,
        duration_ms=1.0,
    )


def test_retry_delays_double_from_the_base_and_stop_at_the_cap():
    delays = [retry_delay_s(n, 1.0, 300.0) for n in range(1, 12)]

    for attempt, delay in enumerate(delays[:8], start=1):
        assert 0.8 * 2 ** (attempt - 1) <= delay <= 1.2 * 2 ** (attempt - 1)
    assert all(delay <= 300.0 for delay in delays)
    assert delays[-1] >= 240.0


def test_retry_delay_of_a_huge_attempt_number_is_the_cap():
    assert retry_delay_s(10**9, 1.0, 300.0) <= 300.0
    assert retry_delay_s(10**9, 1.0, 300.0) >= 240.0


def test_job_lost_more_than_the_allowed_times_is_buried(db):
    job, _ = jobs.enqueue("fn")

    for _ in range(3):
        (claim,) = jobs.claim("w", 1, visibility_timeout_s=0)
        assert jobs.reap(max_lost=2) == 1

    job = Job.get_by_id(job.id)
    assert job.status == "DEAD"
    assert "lost 3 times" in job.last_error
    statuses = [i.status for i in Invocation.select().where(Invocation.job == job.id)]
    assert statuses == ["LOST"] * 3


def test_lost_job_returns_to_the_queue_without_spending_an_attempt(db):
    job, _ = jobs.enqueue("fn", max_attempts=1)
    jobs.claim("w", 1, visibility_timeout_s=0)

    jobs.reap(max_lost=5)

    job = Job.get_by_id(job.id)
    assert (job.status, job.attempts, job.lost_count) == ("PENDING", 0, 1)


def test_worker_that_lost_its_claim_cannot_overwrite_the_outcome(db):
    job, _ = jobs.enqueue("fn")
    (stale,) = jobs.claim("old", 1, visibility_timeout_s=0)
    jobs.reap(max_lost=5)
    (fresh,) = jobs.claim("new", 1, visibility_timeout_s=60)

    assert jobs.succeed(stale, outcome("SUCCEEDED", None), 1) is False
    assert jobs.succeed(fresh, outcome("SUCCEEDED", None), 1) is True
    assert Job.get_by_id(job.id).status == "SUCCEEDED"


def test_failure_with_attempts_left_is_retried_later(db):
    job, _ = jobs.enqueue("fn", max_attempts=2)
    (claim,) = jobs.claim("w", 1, visibility_timeout_s=60)

    jobs.fail(claim, outcome(), 1, backoff_base_s=10, backoff_cap_s=60)

    job = Job.get_by_id(job.id)
    assert job.status == "PENDING"
    assert job.last_error == "ValueError: no"
    assert job.run_at >= utcnow() + timedelta(seconds=7)
    assert jobs.claim("w", 1, visibility_timeout_s=60) == []


def test_claim_skips_a_full_concurrency_key_but_not_jobs_behind_it(db):
    for _ in range(3):
        jobs.enqueue("fn", concurrency_key="k", concurrency_limit=1, priority=5)
    free, _ = jobs.enqueue("fn")

    first = jobs.claim("w", 10, visibility_timeout_s=60)
    second = jobs.claim("w", 10, visibility_timeout_s=60)

    assert len([c for c in first if c.job.concurrency_key == "k"]) == 1
    assert free.id in {c.job.id for c in first}
    assert second == []


def test_purge_deletes_old_finished_jobs_and_frees_their_idempotency_key(db):
    old, _ = jobs.enqueue("fn", idempotency_key="once")
    jobs.cancel(old.id)
    Job.update(finished_at=utcnow() - timedelta(days=8)).execute()
    kept, _ = jobs.enqueue("fn")

    assert jobs.purge(retention_days=7, batch=1) == 1

    assert Job.get_or_none(Job.id == old.id) is None
    assert Job.get_or_none(Job.id == kept.id) is not None
    again, created = jobs.enqueue("fn", idempotency_key="once")
    assert created and again.id != old.id


def test_purge_deletes_old_synchronous_invocations_too(db):
    old = Invocation.create(
        function_id="fn", trigger="http", started_at=utcnow() - timedelta(days=8)
    )
    recent = Invocation.create(function_id="fn", trigger="http")

    jobs.purge(retention_days=7)

    assert Invocation.get_or_none(Invocation.id == old.id) is None
    assert Invocation.get_or_none(Invocation.id == recent.id) is not None


def test_reaping_a_healthy_queue_changes_nothing(db):
    job, _ = jobs.enqueue("fn")
    jobs.claim("w", 1, visibility_timeout_s=60)

    assert jobs.reap(max_lost=5) == 0
    assert Job.get_by_id(job.id).status == "RUNNING"


def test_a_stopped_job_is_cancelled_without_an_error(db):
    job, _ = jobs.enqueue("fn")
    (claim,) = jobs.claim("w", 1, visibility_timeout_s=60)
    jobs.cancel(job.id)

    jobs.stop(claim, outcome("CANCELLED", "cancelled while running"), 1)

    job = Job.get_by_id(job.id)
    assert (job.status, job.last_error) == ("CANCELLED", None)


def test_a_claim_lost_and_taken_again_by_the_same_worker_cannot_settle(db):
    job, _ = jobs.enqueue("fn")
    (stale,) = jobs.claim("w", 1, visibility_timeout_s=0)
    jobs.reap(max_lost=5)
    (fresh,) = jobs.claim("w", 1, visibility_timeout_s=60)

    assert jobs.succeed(stale, outcome("SUCCEEDED", None), 1) is False

    invocation = Invocation.get_by_id(fresh.invocation_id)
    assert invocation.status == "RUNNING"
    assert jobs.succeed(fresh, outcome("SUCCEEDED", None), 1) is True


def test_a_cancel_asked_for_wins_over_a_retry(db):
    job, _ = jobs.enqueue("fn", max_attempts=3)
    (claim,) = jobs.claim("w", 1, visibility_timeout_s=60)
    jobs.cancel(job.id)

    jobs.fail(claim, outcome(), 1, backoff_base_s=0, backoff_cap_s=0)

    assert Job.get_by_id(job.id).status == "CANCELLED"
    assert jobs.claim("w", 1, visibility_timeout_s=60) == []


def test_a_cancel_asked_for_wins_over_a_release_or_a_redelivery(db):
    released, _ = jobs.enqueue("fn")
    (claim,) = jobs.claim("w", 1, visibility_timeout_s=60)
    jobs.cancel(released.id)
    jobs.release(claim, "shutting down")

    reaped, _ = jobs.enqueue("fn")
    jobs.claim("w", 1, visibility_timeout_s=0)
    jobs.cancel(reaped.id)
    jobs.reap(max_lost=5)

    assert Job.get_by_id(released.id).status == "CANCELLED"
    assert Job.get_by_id(reaped.id).status == "CANCELLED"


def test_purging_a_job_deletes_its_invocations(db):
    job, _ = jobs.enqueue("fn")
    (claim,) = jobs.claim("w", 1, visibility_timeout_s=60)
    jobs.succeed(claim, outcome("SUCCEEDED", None), 1)
    Job.update(finished_at=utcnow() - timedelta(days=8)).execute()

    assert jobs.purge(retention_days=7) == 1

    assert Invocation.select().where(Invocation.job == job.id).count() == 0
