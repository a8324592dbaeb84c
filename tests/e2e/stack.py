"""Errand started as a user starts it: gunicorn and ``errand worker`` processes.

The end-to-end tests and ``bench/throughput.py`` share this. Every process
is a direct child of the caller, and :meth:`Stack.stop` ends each one by
its pid: SIGTERM, a wait, then SIGKILL for any that did not listen.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from client import wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
API_KEY = "e2e-key"
GREETER_TOKEN = "e2e-greeter-token"

# Retries and idle polls shrunk to a fraction of a second.
FAST_SETTINGS = {
    "ERRAND_BACKOFF_BASE_S": "0.2",
    "ERRAND_BACKOFF_CAP_S": "1",
    "ERRAND_POLL_INTERVAL_S": "0.1",
    "ERRAND_VISIBILITY_TIMEOUT": "60",
}

TERMINAL = ("SUCCEEDED", "DEAD", "CANCELLED")

# How long the gateway gets to answer its health check after starting.
START_TIMEOUT_S = 30.0

# How long each process gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT_S = 15.0


class StackError(Exception):
    """Raised when a process of the stack fails to start or a command fails."""


class Stack:
    """A gateway and its workers on a data folder of their own under ``folder``.

    ``settings`` are ``ERRAND_*`` variables for every process; ``ERRAND_*``
    variables of the calling environment are left out, so that a developer's
    shell cannot point the stack at another database.
    """

    def __init__(
        self,
        folder: Path,
        *,
        web_workers: int = 2,
        workers: int = 2,
        concurrency: int = 4,
        settings: dict[str, str] = FAST_SETTINGS,
    ):
        self.folder = folder
        self.web_workers = web_workers
        self.workers = workers
        self.concurrency = concurrency
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ERRAND_")},
            **settings,
            "ERRAND_DATA_DIR": str(folder / "data"),
            "ERRAND_API_KEY": API_KEY,
            "ERRAND_URL": self.url,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
        }
        self.processes: dict[str, subprocess.Popen] = {}
        self.session = self.new_session()

    def start(self) -> Stack:
        """Start the gateway and the workers; return once the gateway answers.

        If they do not come up, whatever did start is stopped again.
        """
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        try:
            self._spawn(
                "web",
                BIN / "gunicorn",
                *("-c", "gunicorn.conf.py", "-w", str(self.web_workers)),
                "app:create_app()",
            )
            for number in range(self.workers):
                self._spawn(
                    f"worker-{number}",
                    BIN / "errand",
                    *("worker", "--concurrency", str(self.concurrency)),
                    *("--grace", "5"),
                )
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process this stack started, by its pid."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.session.close()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def errand(self, *args: str, input: str | None = None) -> str:
        """Run the ``errand`` command against this stack; its output."""
        done = subprocess.run(
            [BIN / "errand", *args],
            env=self.env,
            cwd=ROOT,
            input=input,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise StackError(f"errand {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def new_session(self) -> requests.Session:
        """A session that sends this stack's API key; one per thread."""
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        return session

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A request to the gateway through the stack's own session."""
        kwargs.setdefault("timeout", 60)
        return self.session.request(method, self.url + path, **kwargs)

    def enqueue(self, function_id: str, **body: Any) -> str:
        """Enqueue a job and return its id."""
        response = self.api("POST", f"/functions/{function_id}/invoke-async", json=body)
        if response.status_code != 202:
            raise StackError(
                f"enqueue answered {response.status_code}: {response.text}"
            )
        return response.json()["jobId"]

    def wait_for(self, job_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """The job once it has finished, polled with ``?wait=``."""
        deadline = time.monotonic() + timeout_s
        while True:
            wait_s = max(0, min(10, deadline - time.monotonic()))
            job = self.api("GET", f"/jobs/{job_id}?wait={wait_s:.1f}").json()
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() >= deadline:
                raise StackError(
                    f"job {job_id} still {job['status']} after {timeout_s} s\n"
                    + self.logs()
                )

    def jobs(self, **query: str) -> list[dict[str, Any]]:
        """Every job ``GET /jobs`` lists for ``query``, walking all its pages."""
        jobs: list[dict[str, Any]] = []
        params = {**query, "limit": "200"}
        while True:
            body = self.api("GET", "/jobs", params=params).json()
            jobs += body["jobs"]
            if body["nextCursor"] is None:
                return jobs
            params["cursor"] = body["nextCursor"]

    def logs(self, tail_bytes: int = 3000) -> str:
        """The end of every process's log, for a failure message."""
        parts = []
        for path in sorted((self.folder / "logs").glob("*.log")):
            text = path.read_bytes()[-tail_bytes:].decode(errors="replace")
            parts.append(f"--- {path.name}\n{text}")
        return "\n".join(parts)

    def _spawn(self, name: str, *command: str | Path) -> None:
        # The child keeps its own copy of the log's descriptor.
        with open(self.folder / "logs" / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(
                command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )

    def _wait_until_healthy(self) -> None:
        if wait_until_healthy(self.url, lambda: not self._stopped(), START_TIMEOUT_S):
            return
        if stopped := self._stopped():
            raise StackError(f"{', '.join(stopped)} stopped:\n{self.logs()}")
        raise StackError(f"no answer at {self.url}/healthz:\n{self.logs()}")

    def _stopped(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is not None]


def _free_port() -> int:
    """A TCP port nothing listens on now, chosen by the kernel."""
    # TODO: another process may take the port before gunicorn binds it;
    # handing gunicorn a bound socket (--bind fd://N) would close that gap.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
