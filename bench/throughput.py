"""How fast Errand takes and runs jobs on this machine.

Starts a gateway and workers on a temporary data folder (the same stack the
end-to-end tests start), deploys a function that does nothing, and prints
one line per figure:

- enqueue: jobs/s over HTTP from concurrent clients, with the workers idle
  (the jobs are delayed a day, then cancelled);
- end to end: jobs/s from the first of N enqueues until all N succeeded;
- latency of a lone job on an idle system, enqueue to SUCCEEDED, p50 and
  p99: on the client (enqueue, then a ``?wait=`` poll) and on the server
  (the job's finishedAt minus its createdAt).

Run it with ``make bench`` or ``.venv/bin/python bench/throughput.py``.
"""

from __future__ import annotations

import argparse
import math
import os
import runpy
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]

# The stack lives with the end-to-end tests, which start it too.
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from stack import Stack  # noqa: E402

FUNCTION = "noop"
MANIFEST = 'name = "noop"\nhandler = "main.handler"\ntimeout = 10\nmemory = 128\n'
HANDLER = "def handler(event, context):\n    return None\n"


def main() -> None:
    args = parse_args()
    settings = {"ERRAND_POLL_INTERVAL_S": str(args.poll_interval)}
    print(
        f"configuration: {args.jobs} jobs, {args.clients} clients, "
        f"{args.web_workers} gunicorn workers x {_gunicorn_threads()} threads, "
        f"{args.workers} errand workers x {args.concurrency} slots, "
        f"worker poll interval {args.poll_interval} s, "
        f"{args.latency_jobs} lone jobs, {_cpus()} CPUs",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="errand-bench-") as folder:
        stack = Stack(
            Path(folder),
            web_workers=args.web_workers,
            workers=args.workers,
            concurrency=args.concurrency,
            settings=settings,
        )
        with stack:
            stack.errand("deploy", str(_noop_function(Path(folder))))
            measure_enqueue(stack, args.jobs, args.clients)
            measure_end_to_end(stack, args.jobs, args.clients)
            measure_latency(stack, args.latency_jobs)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="N (default 1000)")
    parser.add_argument(
        "--clients", type=int, default=8, help="concurrent HTTP clients (default 8)"
    )
    parser.add_argument(
        "--web-workers", type=int, default=2, help="gunicorn workers (default 2)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="errand workers (default 2)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=_cpus(),
        help="attempts each errand worker runs at once (default: the CPUs)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.5,
        help="ERRAND_POLL_INTERVAL_S of the workers (default 0.5, Errand's own)",
    )
    parser.add_argument(
        "--latency-jobs",
        type=int,
        default=50,
        help="lone jobs timed one after another (default 50)",
    )
    return parser.parse_args()


def measure_enqueue(stack: Stack, jobs: int, clients: int) -> None:
    """Enqueue jobs delayed a day, so no worker competes, then cancel them."""
    started = time.perf_counter()
    job_ids = enqueue_many(stack, jobs, clients, {"delaySeconds": 86400})
    elapsed = time.perf_counter() - started
    print(
        f"enqueue over HTTP: {jobs / elapsed:.0f} jobs/s "
        f"({jobs} jobs, {clients} clients, {elapsed:.2f} s, workers idle)",
        flush=True,
    )

    def cancel(session: requests.Session, job_id: str) -> None:
        session.post(f"{stack.url}/jobs/{job_id}/cancel").raise_for_status()

    in_parallel(stack, clients, job_ids, cancel)


def measure_end_to_end(stack: Stack, jobs: int, clients: int) -> None:
    """From the first enqueue until every job succeeded, workers running."""
    started = time.time()
    job_ids = set(enqueue_many(stack, jobs, clients, {}))
    enqueued = time.time() - started

    finished = wait_until_succeeded(stack, job_ids)
    last = max(finished.values())
    elapsed = last - started
    print(
        f"end to end: {jobs / elapsed:.0f} jobs/s "
        f"({jobs} jobs succeeded {elapsed:.2f} s after the first enqueue; "
        f"enqueueing took {enqueued:.2f} s)",
        flush=True,
    )


def measure_latency(stack: Stack, count: int) -> None:
    """One job at a time on an idle system: client and server views."""
    client_s, server_s = [], []
    for _ in range(count):
        time.sleep(0.2)  # let the workers go back to idle polling
        started = time.perf_counter()
        job = stack.wait_for(stack.enqueue(FUNCTION))
        client_s.append(time.perf_counter() - started)
        server_s.append(_seconds(job["createdAt"], job["finishedAt"]))
        if job["status"] != "SUCCEEDED":
            raise SystemExit(f"a lone job ended {job['status']}: {job}")

    for view, samples in (("client", client_s), ("server", server_s)):
        print(
            f"lone job latency ({view}, enqueue to SUCCEEDED): "
            f"p50 {percentile(samples, 50) * 1000:.0f} ms, "
            f"p99 {percentile(samples, 99) * 1000:.0f} ms ({count} jobs)",
            flush=True,
        )


def enqueue_many(
    stack: Stack, jobs: int, clients: int, body: dict[str, object]
) -> list[str]:
    def enqueue(session: requests.Session, number: int) -> str:
        response = session.post(
            f"{stack.url}/functions/{FUNCTION}/invoke-async",
            json={"event": {"n": number}, **body},
        )
        if response.status_code != 202:
            raise SystemExit(f"enqueue answered {response.status_code}")
        return response.json()["jobId"]

    return in_parallel(stack, clients, range(jobs), enqueue)


def in_parallel(
    stack: Stack,
    clients: int,
    items: Iterable,
    call: Callable[[requests.Session, object], object],
) -> list:
    """``call(session, item)`` for every item, shared among ``clients``
    threads with a session each, results in the order of ``items``."""
    items = list(items)

    def share(client: int) -> list:
        with stack.new_session() as session:
            return [call(session, item) for item in items[client::clients]]

    with ThreadPoolExecutor(clients) as pool:
        shares = list(pool.map(share, range(clients)))
    return [result for share in shares for result in share]


def wait_until_succeeded(stack: Stack, job_ids: set[str]) -> dict[str, float]:
    """Each job's finishedAt (epoch seconds), once all of them succeeded."""
    deadline = time.monotonic() + 60 + len(job_ids)
    while True:
        finished = {
            job["jobId"]: _epoch(job["finishedAt"])
            for job in stack.jobs(functionId=FUNCTION, status="SUCCEEDED")
            if job["jobId"] in job_ids
        }
        if len(finished) == len(job_ids):
            return finished
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(finished)} of {len(job_ids)} jobs succeeded")
        time.sleep(0.5)


def percentile(samples: list[float], p: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _noop_function(folder: Path) -> Path:
    function = folder / "noop"
    function.mkdir()
    (function / "function.toml").write_text(MANIFEST)
    (function / "main.py").write_text(HANDLER)
    return function


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


def _seconds(start: str, end: str) -> float:
    return _epoch(end) - _epoch(start)


def _gunicorn_threads() -> int:
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))["threads"]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


if __name__ == "__main__":
    main()
