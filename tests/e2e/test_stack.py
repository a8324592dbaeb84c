"""Errand end to end: gunicorn, two workers, the examples, and HTTP only."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from stack import GREETER_TOKEN

# ord_123: 10.50 + 2 x 21.00 + 9.40 + 3 x 13.80 = 103.30, less 10% (10.33)
# is 92.97, plus 7.25% California tax (6.74) is 99.71.
ORD_123_TOTAL = "99.71"

BURST_JOBS = 300
BURST_CLIENTS = 8


def at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


def intervals_peak(invocations: list[dict]) -> int:
    """The most invocations running at one instant."""
    edges = []
    for invocation in invocations:
        edges.append((at(invocation["startedAt"]), 1))
        edges.append((at(invocation["finishedAt"]), -1))
    peak = level = 0
    for _, step in sorted(edges):
        level += step
        peak = max(peak, level)
    return peak


def invocations(stack, job_id: str) -> list[dict]:
    return stack.api("GET", f"/jobs/{job_id}/invocations").json()["invocations"]


def test_receipt_job_succeeds_and_a_wait_poll_returns_it(stack):
    job_id = stack.enqueue("receipt", event={"orderId": "ord_123"})

    job = stack.wait_for(job_id)

    assert job["status"] == "SUCCEEDED"
    assert job["attempts"] == 1
    assert job["resultJson"]["orderId"] == "ord_123"
    assert job["resultJson"]["total"] == ORD_123_TOTAL


def test_flaky_job_retries_to_success(stack):
    job_id = stack.enqueue("flaky", event={"succeedOnAttempt": 3}, maxAttempts=3)

    job = stack.wait_for(job_id)

    assert job["status"] == "SUCCEEDED"
    assert job["attempts"] == 3
    assert job["resultJson"] == {"attempt": 3}
    statuses = [i["status"] for i in invocations(stack, job_id)]
    assert statuses == ["FAILED", "FAILED", "SUCCEEDED"]


def test_unknown_order_is_dead_and_dies_again_after_a_requeue(stack):
    job_id = stack.enqueue("receipt", event={"orderId": "ord_999"}, maxAttempts=2)

    dead = stack.wait_for(job_id)
    requeued = stack.api("POST", f"/jobs/{job_id}/requeue")
    dead_again = stack.wait_for(job_id)

    assert dead["status"] == "DEAD"
    assert dead["attempts"] == 2
    assert dead["lastError"].startswith("LookupError")
    assert "ord_999" in dead["lastError"]
    assert requeued.status_code == 200
    assert requeued.json()["status"] == "PENDING"
    assert requeued.json()["attempts"] == 0
    assert dead_again["status"] == "DEAD"
    assert dead_again["lastError"].startswith("LookupError")
    assert len(invocations(stack, job_id)) == 4


def test_same_idempotency_key_twice_makes_one_job(stack):
    body = {"event": {"name": "Ada"}, "idempotencyKey": "e2e-only-once"}

    first = stack.api("POST", "/functions/hello/invoke-async", json=body)
    second = stack.api("POST", "/functions/hello/invoke-async", json=body)

    assert first.status_code == 202
    assert first.json()["deduplicated"] is False
    assert second.status_code == 200
    assert second.json()["deduplicated"] is True
    assert second.json()["jobId"] == first.json()["jobId"]


def test_delayed_job_does_not_start_before_its_run_at(stack):
    sent = datetime.now(UTC)
    job_id = stack.enqueue("hello", event={"name": "later"}, delaySeconds=1.5)

    early = stack.api("GET", f"/jobs/{job_id}").json()
    job = stack.wait_for(job_id)

    assert early["status"] == "PENDING"
    assert job["status"] == "SUCCEEDED"
    run_at = at(job["runAt"])
    assert (run_at - sent).total_seconds() >= 1.5
    assert at(job["startedAt"]) >= run_at
    assert at(invocations(stack, job_id)[0]["startedAt"]) >= run_at


def test_concurrency_key_limits_how_many_jobs_run_at_once(stack):
    body = {"concurrencyKey": "e2e-batch", "concurrencyLimit": 2}
    job_ids = [stack.enqueue("slow", event={"seconds": 0.4}, **body) for _ in range(6)]

    jobs = [stack.wait_for(job_id) for job_id in job_ids]

    assert {job["status"] for job in jobs} == {"SUCCEEDED"}
    runs = [run for job_id in job_ids for run in invocations(stack, job_id)]
    assert len(runs) == 6
    # Eight free slots, so the limit, not the workers, keeps it at two.
    assert intervals_peak(runs) == 2


def test_synchronous_invoke_answers_with_the_result(stack):
    response = stack.api(
        "POST", "/functions/hello/invoke", json={"event": {"name": "Ada"}}
    )

    assert response.status_code == 200
    assert response.json()["result"] == {"message": "hello, Ada"}


def test_function_reads_its_layer_and_its_secret(stack):
    response = stack.api(
        "POST", "/functions/greeter/invoke", json={"event": {"name": "Ada"}}
    )

    assert response.status_code == 200
    assert response.json()["result"] == {
        "greeting": "HELLO, ADA!",
        "tokenLength": len(GREETER_TOKEN),
    }


def test_burst_of_concurrent_enqueues_all_succeed(stack):
    def enqueue_share(client: int) -> list[tuple[int, str | None]]:
        answers = []
        with stack.new_session() as session:
            for number in range(client, BURST_JOBS, BURST_CLIENTS):
                response = session.post(
                    f"{stack.url}/functions/hello/invoke-async",
                    json={"event": {"name": f"burst-{number}"}},
                    timeout=60,
                )
                job_id = response.json().get("jobId") if response.ok else None
                answers.append((response.status_code, job_id))
        return answers

    with ThreadPoolExecutor(BURST_CLIENTS) as pool:
        shares = pool.map(enqueue_share, range(BURST_CLIENTS))
        answers = [answer for share in shares for answer in share]
    job_ids = {job_id for _, job_id in answers}

    assert sorted({status for status, _ in answers}) == [202]
    assert len(job_ids) == BURST_JOBS
    assert wait_until_succeeded(stack, job_ids, timeout_s=90) == job_ids


def wait_until_succeeded(stack, job_ids: set[str], timeout_s: float) -> set[str]:
    """The ids among ``job_ids`` that GET /jobs lists as SUCCEEDED: all of
    them, or as many as made it within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        listed = stack.jobs(functionId="hello", status="SUCCEEDED")
        succeeded = {job["jobId"] for job in listed} & job_ids
        if succeeded == job_ids or time.monotonic() >= deadline:
            return succeeded
        time.sleep(0.5)
