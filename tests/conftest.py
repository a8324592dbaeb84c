"""Fixtures every test tier shares: settings, a database, the app, factories.

Each test gets its own SQLite file under ``tmp_path``. A guard fails any test
that leaves a child process of this one running.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import jobs
import models
import settings as settings_module
from app import create_app

API_KEY = "test-key"

# How long a test's children get to exit after the test before they count
# as strays.
STRAY_GRACE_S = 2.0


@pytest.fixture(autouse=True)
def no_stray_processes():
    """Fail the test if a child process it started is still alive after it."""
    before = _children()

    yield

    deadline = time.monotonic() + STRAY_GRACE_S
    strays = _children() - before
    while strays and time.monotonic() < deadline:
        time.sleep(0.05)
        strays = _children() - before
    if strays:
        described = {pid: _command_line(pid) for pid in sorted(strays)}
        _kill(strays)
        pytest.fail(f"the test left child processes running: {described}")


def _children() -> set[int]:
    """Live (not zombie) child processes of this process."""
    me = os.getpid()
    try:
        pids = {
            int(pid)
            for task in Path(f"/proc/{me}/task").iterdir()
            for pid in (task / "children").read_text().split()
        }
    except OSError:
        # No children files in this kernel, or a thread ended meanwhile.
        pids = {int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()}
    return {pid for pid in pids if _is_live_child(pid, me)}


def _is_live_child(pid: int, parent: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The command name may hold spaces and parentheses; the fields that
    # follow it start after the last ")".
    state, ppid = stat.rpartition(")")[2].split()[:2]
    return int(ppid) == parent and state not in ("Z", "X")


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _kill(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


@pytest.fixture
def settings_env(tmp_path) -> dict[str, str]:
    """The environment the settings are read from; override to change one."""
    return {"ERRAND_DATA_DIR": str(tmp_path / "data"), "ERRAND_API_KEY": API_KEY}


@pytest.fixture
def settings(settings_env) -> settings_module.Settings:
    return settings_module.load(settings_env)


@pytest.fixture
def database(settings):
    """The test's own SQLite file, bound to ``models.db`` for the test."""
    models.connect(settings.database_url)

    yield models.db

    models.db.close()
    models.db.initialize(None)


@pytest.fixture
def app(settings, database):
    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def auth() -> dict[str, str]:
    """Headers that authenticate as the bootstrap key."""
    return {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def make_function(database):
    """Make a ``models.Function`` row (no package): ``make_function("echo")``."""

    def make(function_id: str = "echo", **fields) -> models.Function:
        function, _ = models.Function.get_or_create(id=function_id, defaults=fields)
        return function

    return make


@pytest.fixture
def make_job(make_function):
    """Enqueue a job through ``jobs.enqueue``; keyword arguments override.

    The event defaults to ``{}``, as it does for a request that gives none.
    """

    def make(function_id: str = "echo", **overrides) -> models.Job:
        make_function(function_id)
        job, _ = jobs.enqueue(function_id, **{"event": {}, **overrides})
        return job

    return make
