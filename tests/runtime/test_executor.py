"""The executor, end to end: every test runs real attempts in subprocesses."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from models import InvocationStatus
from runtime import executor
from runtime.executor import AttemptSpec, run_attempt

# Every attempt started here carries this in its environment, and so does
# every process a handler starts, which is how the guard below finds strays.
STRAY_MARKER = f"errand-executor-test-{uuid.uuid4().hex}"


def _processes_with_marker() -> list[int]:
    needle = f"STRAY_MARKER={STRAY_MARKER}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if needle in environ.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            pass
    return found


def _is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process; a zombie is dead, only unreaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _wait_until(condition, timeout_s: float = 2.0) -> bool:
    """Poll ``condition``: SIGKILL is delivered soon after it is sent, not at once."""
    give_up = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture(autouse=True)
def no_stray_processes():
    """Fail a test that leaves any process of its attempts running."""
    yield

    _wait_until(lambda: not _processes_with_marker())
    strays = _processes_with_marker()
    for pid in strays:
        os.kill(pid, signal.SIGKILL)
    assert not strays, f"processes outlived their attempt: {strays}"


@pytest.fixture
def make_spec(tmp_path):
    """Write a function whose ``main.py`` is ``source``; return its spec."""

    def make(source: str, handler: str = "main.handler", **overrides) -> AttemptSpec:
        code_dir = tmp_path / "function"
        code_dir.mkdir(exist_ok=True)
        (code_dir / "main.py").write_text(textwrap.dedent(source))

        env = {"STRAY_MARKER": STRAY_MARKER, **overrides.pop("env", {})}
        fields = {
            "code_dir": code_dir,
            "handler": handler,
            "event": {"orderId": 42},
            "function_id": "orders",
            "version": 3,
            "timeout_s": 10.0,
            "env": env,
        }
        return AttemptSpec(**(fields | overrides))

    return make


def test_sync_handler_returns_its_result(make_spec):
    spec = make_spec(
        """
        def handler(event, context):
            return {"total": event["orderId"] * 2, "items": [1, "two", None]}
        """
    )

    outcome = run_attempt(spec)

    assert outcome.status is InvocationStatus.SUCCEEDED
    assert outcome.result == {"total": 84, "items": [1, "two", None]}
    assert outcome.error is None and outcome.error_type is None
    assert outcome.exit_code == 0
    assert outcome.finished_at >= outcome.started_at
    assert outcome.duration_ms > 0
    assert 0 < outcome.peak_memory_kb < 256 * 1024


def test_async_handler_is_run_to_completion(make_spec):
    spec = make_spec(
        """
        import asyncio

        async def handler(event, context):
            await asyncio.sleep(0.01)
            return event["orderId"] + 1
        """
    )

    outcome = run_attempt(spec)

    assert outcome.status is InvocationStatus.SUCCEEDED
    assert outcome.result == 43


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_small_handler_runs_within_64_mib(make_spec, kind):
    spec = make_spec(
        """
        import json, threading

        def handler(event, context):
            thread = threading.Thread(target=lambda: None)
            thread.start()
            thread.join()
            return json.loads(json.dumps(event))

        async def async_handler(event, context):
            return handler(event, context)
        """,
        handler="main.handler" if kind == "sync" else "main.async_handler",
        memory_mb=64,
    )

    outcome = run_attempt(spec)

    assert outcome.status is InvocationStatus.SUCCEEDED, outcome.logs
    assert outcome.result == {"orderId": 42}


def test_prints_go_to_the_logs_and_not_the_result(make_spec):
    spec = make_spec(
        """
        import sys

        def handler(event, context):
            print("to stdout")
            print("to stderr", file=sys.stderr)
            context.logger.info("through the context's logger")
            print("not JSON {{{")
            return "the result"
        """
    )

    outcome = run_attempt(spec)

    assert outcome.status is InvocationStatus.SUCCEEDED
    assert outcome.result == "the result"
    assert "to stdout\n" in outcome.logs
    assert "to stderr\n" in outcome.logs
    assert "INFO handler: through the context's logger" in outcome.logs
    assert "the result" not in outcome.logs


def test_logs_keep_only_the_last_256_kib(make_spec):
    spec = make_spec(
        """
        import sys

        def handler(event, context):
            sys.stdout.write("x" * 300 * 1024)
            sys.stdout.write("\\u00e9 the end")
        """
    )

    outcome = run_attempt(spec)

    assert outcome.logs.endswith("\u00e9 the end")
    dropped = len(outcome.logs.encode()) - executor.MAX_LOG_BYTES
    assert outcome.logs.startswith("[")
    assert 0 < dropped < 64


def test_exception_fails_the_attempt_with_type_message_and_traceback(make_spec):
    spec = make_spec(
        """
        def handler(event, context):
            return event["customerId"]
        """
    )

    outcome = run_attempt(spec)

    assert outcome.status is InvocationStatus.FAILED
    assert outcome.error_type == "KeyError"
    assert outcome.error == "KeyError: 'customerId'"
    assert "main.py" in outcome.traceback
    assert 'return event["customerId"]' in outcome.traceback
    assert outcome.exit_code == 0


def test_exception_of_the_function_is_named_with_its_module(make_spec):
    spec = make_spec(
        """
        class OrderRejected(Exception):
            pass

        def handler(event, context):
            raise OrderRejected("no stock\\nfor item 7")
        """
    )

    outcome = run_attempt(spec)

    assert outcome.error_type == "main.OrderRejected"
    assert outcome.error == "main.OrderRejected: no stock ..."


def test_handler_that_cannot_be_imported_fails_the_attempt(make_spec):
    spec = make_spec("def handler(event, context):\n    return 1\n", "main.missing")

    outcome = run_attempt(spec)

    assert outcome.status is InvocationStatus.FAILED
    assert outcome.error_type == "AttributeError"
    assert "missing" in outcome.error


def test_os_exit_is_a_crash_naming_the_exit_status(make_spec):
    spec = make_spec(
        """
        import os

        def handler(event, context):
            os._exit(3)
        """
    )

    outcome = run_attempt(spec)

    assert outcome.status is InvocationStatus.FAILED
    assert outcome.error_type == "Crash"
    assert outcome.error == "exited with status 3 without a result"
    assert outcome.exit_code == 3


def test_segfault_is_a_crash_naming_the_signal(make_spec):
    spec = make_spec(
        """
        import ctypes, faulthandler

        def handler(event, context):
            faulthandler.disable()
            ctypes.string_at(0)
        """
    )

    outcome = run_attempt(spec)

    assert outcome.status is InvocationStatus.FAILED
    assert outcome.error_type == "Crash"
    assert outcome.error == "killed by signal 11 (SIGSEGV)"
    assert outcome.exit_code == -signal.SIGSEGV


@pytest.mark.parametrize(
    "value, reason",
    [
        ("object()", "not JSON-serialisable"),
        ("float('nan')", "not JSON-serialisable"),
        ("'x' * (1024 * 1024)", "over the limit of 1048576 bytes"),
    ],
)
def test_unreturnable_value_is_an_invalid_result(make_spec, value, reason):
    spec = make_spec(f"def handler(event, context):\n    return {value}\n")

    outcome = run_attempt(spec)

    assert outcome.status is InvocationStatus.FAILED
    assert outcome.error_type == "InvalidResult"
    assert outcome.error.startswith("InvalidResult: the return value ")
    assert reason in outcome.error
    assert outcome.result is None


def test_spec_env_is_visible_and_the_parent_environment_is_not(make_spec, monkeypatch):
    monkeypatch.setenv("ERRAND_DATABASE_URL", "postgres://u:p@db/errand")
    monkeypatch.setenv("ERRAND_API_KEY", "parent-key")
    monkeypatch.setenv("PARENT_ONLY_MARKER", "leaked")
    spec = make_spec(
        """
        import os, subprocess

        def handler(event, context):
            grandchild = subprocess.run(
                ["env"], capture_output=True, text=True, check=True
            ).stdout
            return {"env": dict(os.environ), "grandchild": grandchild}
        """,
        env={"GREETING": "hello", "API_TOKEN": "function-secret"},
    )

    outcome = run_attempt(spec)

    env = outcome.result["env"]
    assert env["GREETING"] == "hello"
    assert env["API_TOKEN"] == "function-secret"
    assert env["LC_ALL"] == "C.UTF-8"
    assert not [name for name in env if name.startswith("ERRAND_")]
    assert "PARENT_ONLY_MARKER" not in env
    assert "postgres://" not in outcome.result["grandchild"]
    assert "leaked" not in outcome.result["grandchild"]


def test_layer_dirs_are_importable_after_the_code_dir(make_spec, tmp_path):
    first, second = tmp_path / "layer-one", tmp_path / "layer-two"
    (first / "shared").mkdir(parents=True)
    (first / "shared" / "__init__.py").write_text("")
    (first / "shared" / "money.py").write_text("CURRENCY = 'EUR'\n")
    second.mkdir()
    (second / "shared.py").write_text("CURRENCY = 'shadowed'\n")
    (second / "extra.py").write_text("def double(n):\n    return n * 2\n")
    spec = make_spec(
        """
        import extra
        from shared.money import CURRENCY

        def handler(event, context):
            return [CURRENCY, extra.double(event["orderId"])]
        """,
        layer_dirs=(first, second),
    )

    outcome = run_attempt(spec)

    assert outcome.result == ["EUR", 84]


def test_dotted_handler_names_a_module_inside_a_package(make_spec):
    spec = make_spec("", handler="orders.api.handle")
    package = spec.code_dir / "orders"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "api.py").write_text("def handle(event, context):\n    return 'ok'\n")

    outcome = run_attempt(spec)

    assert outcome.result == "ok"


def test_context_describes_the_attempt(make_spec):
    spec = make_spec(
        """
        def handler(event, context):
            return {
                "function_id": context.function_id,
                "version": context.version,
                "job_id": context.job_id,
                "attempt": context.attempt,
                "remaining": context.remaining_seconds(),
                "deadline": context.deadline.isoformat(),
            }
        """,
        job_id="job-1",
        attempt=2,
        timeout_s=5.0,
    )

    outcome = run_attempt(spec)

    context = outcome.result
    assert context["function_id"] == "orders"
    assert context["version"] == 3
    assert context["job_id"] == "job-1"
    assert context["attempt"] == 2
    assert 0 < context["remaining"] <= 5.0
    assert context["deadline"].endswith("+00:00")


def test_timeout_kills_the_handler_and_its_grandchild(make_spec, tmp_path, monkeypatch):
    monkeypatch.setattr(executor, "KILL_GRACE_S", 0.3)
    pid_file = tmp_path / "grandchild.pid"
    spec = make_spec(
        """
        import os, signal, subprocess, time

        def handler(event, context):
            # Ignored signals stay ignored across exec: sleep ignores it too.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            grandchild = subprocess.Popen(["sleep", "60"])
            with open(os.environ["PID_FILE"], "w") as pid_file:
                pid_file.write(str(grandchild.pid))
            time.sleep(60)
        """,
        env={"PID_FILE": str(pid_file)},
        # Long enough for the handler to start its grandchild on a busy host.
        timeout_s=1.5,
    )

    outcome = run_attempt(spec)

    assert outcome.status is InvocationStatus.TIMED_OUT
    assert outcome.error_type == "TimeoutError"
    assert outcome.error == "timed out after 1.5 s"
    assert outcome.exit_code == -signal.SIGKILL
    grandchild = int(pid_file.read_text())
    assert _wait_until(lambda: not _is_running(grandchild))


def test_grandchild_left_behind_by_a_finished_handler_is_killed(make_spec, tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    spec = make_spec(
        """
        import os, subprocess

        def handler(event, context):
            grandchild = subprocess.Popen(["sleep", "60"])
            with open(os.environ["PID_FILE"], "w") as pid_file:
                pid_file.write(str(grandchild.pid))
            return "done"
        """,
        env={"PID_FILE": str(pid_file)},
    )

    outcome = run_attempt(spec)

    assert outcome.result == "done"
    grandchild = int(pid_file.read_text())
    assert _wait_until(lambda: not _is_running(grandchild))


def test_timeout_gives_the_handler_a_grace_period_to_clean_up(make_spec):
    spec = make_spec(
        """
        import signal, sys, time

        def stop(signum, frame):
            print("cleaning up")
            sys.exit(0)

        def handler(event, context):
            signal.signal(signal.SIGTERM, stop)
            print("working")
            time.sleep(60)
        """,
        # Long enough for the handler to install its own SIGTERM handler.
        timeout_s=1.5,
    )

    outcome = run_attempt(spec)

    assert outcome.status is InvocationStatus.TIMED_OUT
    assert outcome.logs == "working\ncleaning up\n"
    assert outcome.exit_code == 0


def test_cpu_limit_is_reported_as_a_timeout(make_spec):
    spec = make_spec(
        """
        import os, signal

        def handler(event, context):
            os.kill(os.getpid(), signal.SIGXCPU)
        """,
        timeout_s=2.5,
    )

    outcome = run_attempt(spec)

    assert outcome.status is InvocationStatus.TIMED_OUT
    assert outcome.error == "used up its CPU time limit of 4 s"


def test_memory_hog_is_stopped_and_reported(make_spec):
    spec = make_spec(
        """
        def handler(event, context):
            chunks = []
            while len(chunks) < 1024:
                chunks.append(bytearray(1024 * 1024))
            return len(chunks)
        """,
        memory_mb=128,
    )

    outcome = run_attempt(spec)

    assert outcome.status is InvocationStatus.FAILED
    assert outcome.error_type == "MemoryError"
    assert outcome.error.endswith("(memory limit 128 MiB)")
    assert 64 * 1024 < outcome.peak_memory_kb < 128 * 1024


def _can_raise_hard_limits() -> bool:
    """Whether this process holds CAP_SYS_RESOURCE, as root usually does."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 24))
    return False


@pytest.mark.skipif(
    _can_raise_hard_limits(), reason="CAP_SYS_RESOURCE lets a handler lift limits"
)
def test_handler_cannot_raise_its_limits(make_spec):
    spec = make_spec(
        """
        import resource

        def handler(event, context):
            resource.setrlimit(resource.RLIMIT_AS, (2**40, 2**40))
        """,
        memory_mb=128,
    )

    outcome = run_attempt(spec)

    assert outcome.status is InvocationStatus.FAILED
    assert outcome.error_type == "ValueError"


def test_cancel_stops_a_long_handler(make_spec):
    spec = make_spec(
        """
        import time

        def handler(event, context):
            time.sleep(60)
        """
    )
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()

    outcome = run_attempt(spec, cancel)

    assert outcome.status is InvocationStatus.CANCELLED
    assert outcome.error_type == "Cancelled"
    assert outcome.duration_ms < 2000


def test_attempt_dies_with_the_worker_that_started_it(make_spec, tmp_path):
    pid_file = tmp_path / "attempt.pid"
    spec = make_spec(
        """
        import os, time

        def handler(event, context):
            with open(os.environ["PID_FILE"], "w") as pid_file:
                pid_file.write(str(os.getpid()))
            time.sleep(60)
        """,
        env={"PID_FILE": str(pid_file)},
    )
    worker_script = textwrap.dedent(
        f"""
        from pathlib import Path
        from runtime.executor import AttemptSpec, run_attempt

        run_attempt(AttemptSpec(
            code_dir=Path({str(spec.code_dir)!r}),
            handler="main.handler",
            event=None,
            function_id="orders",
            version=1,
            timeout_s=30.0,
            env={dict(spec.env)!r},
        ))
        """
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", worker_script],
        env=os.environ | {"TMPDIR": str(tmp_path)},
    )
    assert _wait_until(lambda: pid_file.exists() and pid_file.read_text(), 10.0)

    worker.kill()
    worker.wait()

    attempt = int(pid_file.read_text())
    assert _wait_until(lambda: not _is_running(attempt))


def test_private_working_dir_is_removed_after_the_attempt(make_spec):
    spec = make_spec(
        """
        import os, stat

        def handler(event, context):
            os.makedirs("locked/inner")
            open("locked/inner/data", "w").close()
            os.chmod("locked/inner", 0)
            os.chmod("locked", 0o500)
            return {"cwd": os.getcwd(), "mode": stat.S_IMODE(os.stat(".").st_mode)}
        """
    )

    outcome = run_attempt(spec)

    assert outcome.result["mode"] == 0o700
    assert not os.path.exists(outcome.result["cwd"])


def test_attempts_run_in_parallel_threads(make_spec):
    spec = make_spec(
        """
        import time

        def handler(event, context):
            time.sleep(0.2)
            return event["n"] * 10
        """
    )
    specs = [dataclasses.replace(spec, event={"n": n}) for n in range(6)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(run_attempt, specs))

    assert [outcome.result for outcome in outcomes] == [0, 10, 20, 30, 40, 50]


def test_a_secret_holding_a_shorter_one_is_masked_whole(make_spec):
    spec = make_spec(
        """
        def handler(event, context):
            print("password is prod-db-password-9f8e")
            raise ValueError("prod-db-password-9f8e")
        """,
        redact=("prod", "prod-db-password-9f8e"),
    )

    outcome = run_attempt(spec)

    assert outcome.error == "ValueError: [redacted]"
    assert "password is [redacted]" in outcome.logs
    assert "9f8e" not in outcome.logs + outcome.traceback
