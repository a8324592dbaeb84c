"""The worker against real processes: delivery, retries, leases, limits."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

from models import Invocation, InvocationStatus, Job

SUCCEEDED = InvocationStatus.SUCCEEDED.value
AUTH = {"Authorization": "Bearer test-key"}

# What a poll and the start of an attempt may add to a wait, at most.
SLACK_S = 1.0


def overlap_peak(intervals) -> int:
    """The most intervals open at one instant."""
    starts = [(start, 1) for start, _ in intervals]
    ends = [(end, -1) for _, end in intervals]
    peak = level = 0
    for _, step in sorted(starts + ends):
        level += step
        peak = max(peak, level)
    return peak


def test_two_workers_run_200_jobs_each_exactly_once(queue):
    queue.deploy("hello")
    job_ids = [queue.enqueue("hello", event={"name": f"n{i}"}) for i in range(200)]

    queue.start_worker(concurrency=2)
    queue.start_worker(concurrency=2)
    queue.wait_for(job_ids, timeout_s=120)

    successes = (
        Invocation.select()
        .where(Invocation.status == SUCCEEDED)
        .order_by(Invocation.job)
    )
    per_job = {}
    for invocation in successes:
        per_job[invocation.job_id] = per_job.get(invocation.job_id, 0) + 1
    assert per_job == {job_id: 1 for job_id in job_ids}
    assert Invocation.select().count() == 200
    workers = {invocation.worker_id for invocation in successes}
    assert len(workers) == 2


def test_flaky_job_succeeds_on_its_third_attempt_after_backing_off(queue):
    queue.deploy("flaky")
    job_id = queue.enqueue("flaky", event={"succeedOnAttempt": 3}, maxAttempts=3)

    queue.start_worker()
    queue.wait_for([job_id], timeout_s=30)

    job = queue.job(job_id)
    assert job["attempts"] == 3
    assert job["resultJson"] is not None
    first, second, third = queue.invocations(job_id)
    statuses = [first.status, second.status, third.status]
    assert statuses == ["FAILED", "FAILED", SUCCEEDED]
    # Backoff base 0.5 s, doubling, with up to 20% jitter; polling and
    # starting the next attempt add a little, more on a busy machine.
    gap_1 = (second.started_at - first.finished_at).total_seconds()
    gap_2 = (third.started_at - second.finished_at).total_seconds()
    assert 0.4 <= gap_1 <= 0.6 + SLACK_S
    assert 0.8 <= gap_2 <= 1.2 + SLACK_S


def test_job_out_of_attempts_is_dead_and_requeue_gives_a_fresh_budget(queue):
    queue.deploy("flaky")
    job_id = queue.enqueue("flaky", event={"succeedOnAttempt": 3}, maxAttempts=2)
    queue.start_worker()

    queue.wait_for([job_id], ("DEAD",), timeout_s=30)
    dead = queue.job(job_id)
    last = queue.invocations(job_id)[-1]

    assert dead["attempts"] == 2
    assert last.status == "FAILED"
    assert dead["lastError"] and dead["lastError"] == last.error

    response = queue.client.post(
        f"/jobs/{job_id}/requeue", headers={"Authorization": "Bearer test-key"}
    )
    assert response.status_code == 200
    assert response.json["attempts"] == 0
    queue.wait_for([job_id], ("DEAD",), timeout_s=30)
    history = queue.invocations(job_id)
    assert [i.attempt for i in history] == [1, 2, 1, 2]
    assert queue.job(job_id)["attempts"] == 2


def test_killed_workers_job_is_run_by_another_after_its_lease_expires(queue):
    queue.deploy("slow")
    job_id = queue.enqueue("slow", event={"seconds": 1.5})
    doomed = queue.start_worker(concurrency=1)
    queue.wait_until_running(job_id)

    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    queue.start_worker(concurrency=1)
    queue.wait_for([job_id], timeout_s=30)

    lost, delivered = queue.invocations(job_id)
    assert lost.status == "LOST"
    assert delivered.status == SUCCEEDED
    assert delivered.worker_id != lost.worker_id
    job = Job.get_by_id(job_id)
    assert job.attempts == 1  # the lost delivery spent nothing
    assert job.lost_count == 1


def test_concurrency_key_caps_running_jobs_across_workers(queue):
    queue.deploy("slow")
    keyed = [
        queue.enqueue(
            "slow", event={"seconds": 0.4}, concurrencyKey="k", concurrencyLimit=2
        )
        for _ in range(12)
    ]
    others = [
        queue.enqueue("slow", event={"seconds": 0.4}, concurrencyKey="other")
        for _ in range(3)
    ]

    queue.start_worker(concurrency=3)
    queue.start_worker(concurrency=3)
    queue.wait_for(keyed + others, timeout_s=60)

    def spans(job_ids):
        rows = Invocation.select().where(Invocation.job.in_(job_ids))
        return [(row.started_at, row.finished_at) for row in rows]

    assert overlap_peak(spans(keyed)) == 2
    keyed_start = min(start for start, _ in spans(keyed))
    keyed_end = max(end for _, end in spans(keyed))
    assert any(keyed_start < start < keyed_end for start, _ in spans(others))


def test_higher_priority_jobs_are_claimed_first(queue):
    queue.deploy("hello")
    low = queue.enqueue("hello", priority=-5)
    first_normal = queue.enqueue("hello")
    high = queue.enqueue("hello", priority=10)
    second_normal = queue.enqueue("hello")

    queue.start_worker(concurrency=1)
    queue.wait_for([low, first_normal, high, second_normal])

    order = [row.job_id for row in Invocation.select().order_by(Invocation.started_at)]
    assert order == [high, first_normal, second_normal, low]


def test_delayed_job_never_starts_before_its_run_at(queue):
    queue.deploy("hello")
    queue.start_worker()
    soon = queue.enqueue("hello", delaySeconds=1.5)
    now = queue.enqueue("hello")

    queue.wait_for([soon, now], timeout_s=30)

    delayed = Job.get_by_id(soon)
    (invocation,) = queue.invocations(soon)
    assert invocation.started_at >= delayed.run_at
    assert delayed.run_at - delayed.created_at >= timedelta(seconds=1.5)
    assert queue.invocations(now)[0].started_at < delayed.run_at


def test_cancelling_a_running_job_stops_its_attempt(queue):
    queue.deploy("slow")
    job_id = queue.enqueue("slow", event={"seconds": 60})
    queue.start_worker()
    queue.wait_until_running(job_id)

    started = time.monotonic()
    response = queue.client.post(
        f"/jobs/{job_id}/cancel", headers={"Authorization": "Bearer test-key"}
    )
    queue.wait_for([job_id], ("CANCELLED",), timeout_s=10)

    assert response.status_code == 200
    assert time.monotonic() - started < 5
    (invocation,) = queue.invocations(job_id)
    assert invocation.status == "CANCELLED"


def test_graceful_shutdown_returns_unfinished_jobs_without_spending_attempts(queue):
    queue.deploy("slow")
    quick = queue.enqueue("slow", event={"seconds": 0.2})
    long = queue.enqueue("slow", event={"seconds": 60})
    worker = queue.start_worker("--grace", "1", concurrency=2)
    queue.wait_for([quick], timeout_s=20)
    queue.wait_until_running(long)

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0

    job = Job.get_by_id(long)
    assert job.status == "PENDING"
    assert job.attempts == 0
    assert queue.invocations(long)[0].status == "LOST"
    queue.start_worker(concurrency=2)
    queue.wait_until_running(long)


def test_graceful_shutdown_lets_attempts_within_the_grace_finish(queue):
    queue.deploy("slow")
    job_id = queue.enqueue("slow", event={"seconds": 1})
    worker = queue.start_worker("--grace", "10")
    queue.wait_until_running(job_id)

    worker.send_signal(signal.SIGTERM)

    assert worker.wait(timeout=15) == 0
    assert Job.get_by_id(job_id).status == "SUCCEEDED"


def test_a_second_signal_cuts_the_grace_short(queue):
    queue.deploy("slow")
    job_id = queue.enqueue("slow", event={"seconds": 60})
    worker = queue.start_worker("--grace", "60")
    queue.wait_until_running(job_id)

    worker.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)

    assert worker.wait(timeout=15) == 0
    assert time.monotonic() - started < 10
    assert Job.get_by_id(job_id).status == "PENDING"


def test_a_job_whose_function_is_gone_fails_at_once_with_the_reason(queue):
    queue.deploy("hello")
    job_id = queue.enqueue("hello", maxAttempts=1)
    queue.client.delete("/functions/hello", headers=AUTH)

    queue.start_worker()
    queue.wait_for([job_id], ("DEAD",), timeout_s=20)

    assert queue.job(job_id)["lastError"] == "NotFound: no function 'hello'"
