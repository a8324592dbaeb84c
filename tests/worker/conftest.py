"""A queue on a temporary database, with real ``errand worker`` processes.

Timings are shrunk through settings (lease, backoff, poll interval), never
by sleeps in the code under test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import client as client_commands
import settings as settings_module
from app import create_app
from models import Invocation, Job, JobStatus

EXAMPLES = Path(__file__).resolve().parents[2] / "functions"
ERRAND = Path(sys.executable).with_name("errand")
AUTH = {"Authorization": "Bearer test-key"}

FAST_SETTINGS = {
    "ERRAND_API_KEY": "test-key",
    "ERRAND_VISIBILITY_TIMEOUT": "6",
    "ERRAND_BACKOFF_BASE_S": "0.5",
    "ERRAND_BACKOFF_CAP_S": "4",
    "ERRAND_POLL_INTERVAL_S": "0.1",
}


class Queue:
    """The gateway in-process and the workers as subprocesses, on one database."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.env = {"ERRAND_DATA_DIR": str(tmp_path / "data"), **FAST_SETTINGS}
        self.config = settings_module.load(self.env)
        self.client = create_app(self.config).test_client()
        self.workers: list[subprocess.Popen] = []

    def deploy(self, name: str) -> None:
        response = self.client.put(
            f"/functions/{name}",
            data=client_commands.pack(EXAMPLES / name),
            content_type="application/zip",
            headers=AUTH,
        )
        assert response.status_code in (200, 201), response.json

    def enqueue(self, function_id: str, **body) -> str:
        response = self.client.post(
            f"/functions/{function_id}/invoke-async", json=body, headers=AUTH
        )
        assert response.status_code == 202, response.json
        return response.json["jobId"]

    def job(self, job_id: str) -> dict:
        return self.client.get(f"/jobs/{job_id}", headers=AUTH).json

    def invocations(self, job_id: str) -> list[Invocation]:
        return list(
            Invocation.select()
            .where(Invocation.job == job_id)
            .order_by(Invocation.started_at)
        )

    def start_worker(self, *args: str, concurrency: int = 2) -> subprocess.Popen:
        # The child keeps its own copy of the log's descriptor.
        with open(self.tmp_path / f"worker-{len(self.workers)}.log", "wb") as log:
            process = subprocess.Popen(
                [str(ERRAND), "worker", "--concurrency", str(concurrency), *args],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.workers.append(process)
        return process

    def wait_for(self, job_ids, statuses=("SUCCEEDED",), timeout_s=60.0) -> None:
        """Wait until every job is in one of ``statuses``, or fail."""
        deadline = time.monotonic() + timeout_s
        pending = set(job_ids)
        while pending and time.monotonic() < deadline:
            done = Job.select(Job.id).where(
                Job.id.in_(list(pending)) & Job.status.in_(list(statuses))
            )
            pending -= {job.id for job in done}
            if pending:
                time.sleep(0.05)
        assert not pending, f"{len(pending)} job(s) not {statuses}: {self.logs()}"

    def wait_until_running(self, job_id: str, timeout_s: float = 20.0) -> None:
        self.wait_for([job_id], (JobStatus.RUNNING.value,), timeout_s)

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")[-4000:]
            for path in sorted(self.tmp_path.glob("worker-*.log"))
        )

    def stop_all(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def queue(tmp_path):
    queue = Queue(tmp_path)
    yield queue
    queue.stop_all()
