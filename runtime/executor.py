"""Run one attempt of a function in a fresh, locked-down subprocess.

Each attempt gets its own interpreter (``python -I -S``), its own session and
process group, a private working folder and an environment built from
nothing but a few safe defaults and the function's own variables. The child
side lives in :mod:`runtime.bootstrap`; this module starts it, watches the
clock and the cancel flag, and turns whatever happened into an
:class:`AttemptOutcome`.

Three channels connect the two sides, all anonymous temporary files so no
pipe can fill up and stall either process: the request goes in on stdin, the
handler's stdout and stderr go to one log file, and the result comes back on
a descriptor of its own, so nothing the handler prints can corrupt it.

:func:`run_attempt` is safe to call from many threads at once. It reaps only
its own child, by pid, so nothing else in the process may reap children with
``os.wait()`` or ``waitpid(-1)``.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from models import InvocationStatus, utcnow
from runtime import bootstrap
from runtime.limits import MiB, rlimits_for

logger = logging.getLogger(__name__)

BOOTSTRAP_PATH = Path(bootstrap.__file__).resolve()

# -I keeps the parent's PYTHON* variables, user site and current folder out of
# the child, which also means PYTHONUNBUFFERED and PYTHONDONTWRITEBYTECODE in
# its environment only reach the processes a handler starts: -u and -B give
# the bootstrap interpreter the same behaviour. -S leaves site-packages out:
# a handler sees the standard library, its own folder and its layers, and
# the interpreter starts in a fraction of the time.
INTERPRETER_FLAGS = ("-I", "-S", "-B", "-u")

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

# How long a stopped attempt has between SIGTERM and SIGKILL to clean up.
KILL_GRACE_S = 2.0

MAX_LOG_BYTES = 256 * 1024
MAX_RESULT_BYTES = MiB

# The report carries a traceback as well as the result; the bootstrap keeps
# both bounded, so a report bigger than this was not written by it.
MAX_REPORT_BYTES = MAX_RESULT_BYTES + MiB

# Waiting for the child polls from this often to this seldom: quick handlers
# are noticed within a millisecond or two, slow ones cost little to watch.
POLL_MIN_S = 0.001
POLL_MAX_S = 0.025


@dataclass(frozen=True)
class AttemptSpec:
    """Everything needed to run one attempt of one version of a function.

    ``handler`` names ``module.attribute``, where the module may be dotted.
    ``code_dir`` goes first on the child's ``sys.path``, then ``layer_dirs``
    in order. ``env`` is the whole of the handler's environment beyond a few
    safe defaults: the manifest's variables and the function's secrets,
    already merged. ``job_id`` is ``None`` for a synchronous call.
    ``memory_mb`` caps the child's address space; the interpreter alone needs
    about 32 MiB of it. Each string in ``redact`` (the secrets' values) is
    masked wherever it shows in the outcome's error, traceback and logs.
    """

    code_dir: Path
    handler: str
    event: Any
    function_id: str
    version: int
    timeout_s: float
    memory_mb: int = 256
    env: Mapping[str, str] = field(default_factory=dict)
    layer_dirs: Sequence[Path] = ()
    job_id: str | None = None
    attempt: int = 1
    redact: Sequence[str] = ()


# A value shorter than this is not redacted: masking every "a" or "1" would
# garble the logs and hide nothing worth hiding.
MIN_REDACTED_CHARS = 4
REDACTED = "[redacted]"


@dataclass(kw_only=True)
class AttemptOutcome:
    """How an attempt ended.

    ``status`` is SUCCEEDED, FAILED, TIMED_OUT or CANCELLED. ``result`` is set
    only on success; ``error`` is then ``None``, otherwise one line for
    people, with ``error_type`` the machine-readable kind: the exception's
    type name, or "Crash", "InvalidResult", "TimeoutError" or "Cancelled".
    ``exit_code`` is the process's exit status, negative when a signal ended
    it. Times are naive UTC.
    """

    status: InvocationStatus
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    logs: str = ""
    exit_code: int | None = None
    peak_memory_kb: int | None = None
    started_at: datetime
    finished_at: datetime
    duration_ms: float


def run_attempt(
    spec: AttemptSpec, cancel: threading.Event | None = None
) -> AttemptOutcome:
    """Run ``spec`` in a subprocess and wait for it, at most ``spec.timeout_s``.

    Setting ``cancel`` stops the attempt early. A handler's failure, crash,
    timeout or cancellation is an outcome, not an exception. This raises only
    when the attempt cannot start: ``OSError`` when no process or temporary
    file can be made, ``TypeError`` or ``ValueError`` for a spec that cannot
    be handed over (an event that is not JSON, a NUL byte in the environment).
    """
    started_at = utcnow()
    workdir = Path(tempfile.mkdtemp(prefix="errand-attempt-"))
    try:
        with (
            tempfile.TemporaryFile() as request,
            tempfile.TemporaryFile() as report,
            tempfile.TemporaryFile() as logs,
        ):
            outcome = _run(spec, cancel, workdir, request, report, logs, started_at)
    finally:
        _remove_tree(workdir)
    return _redacted(outcome, spec.redact)


def _redacted(outcome: AttemptOutcome, values: Sequence[str]) -> AttemptOutcome:
    """The outcome with ``values`` masked in everything it reports but the
    result, which is the caller's own business."""
    # Longest first, so that a secret holding a shorter one is masked whole.
    values = sorted(
        (value for value in values if len(value) >= MIN_REDACTED_CHARS),
        key=len,
        reverse=True,
    )
    for name in ("error", "traceback", "logs"):
        text = getattr(outcome, name)
        if text:
            for value in values:
                text = text.replace(value, REDACTED)
            setattr(outcome, name, text)
    return outcome


def _run(
    spec: AttemptSpec,
    cancel: threading.Event | None,
    workdir: Path,
    request: IO[bytes],
    report: IO[bytes],
    logs: IO[bytes],
    started_at: datetime,
) -> AttemptOutcome:
    """Start the child on the three channels, wait, and read what it left."""
    deadline_epoch = time.time() + spec.timeout_s
    request.write(_request(spec, report.fileno(), deadline_epoch))
    request.seek(0)

    start = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, *INTERPRETER_FLAGS, str(BOOTSTRAP_PATH)],
        stdin=request,
        stdout=logs,
        stderr=logs,
        cwd=workdir,
        env=_environment(spec, workdir),
        pass_fds=(report.fileno(),),
        start_new_session=True,
    )
    logger.debug(
        "attempt %d of %s v%d started as pid %d",
        spec.attempt,
        spec.function_id,
        spec.version,
        child.pid,
    )

    stopped, exit_code, peak_kb = _wait(child, start + spec.timeout_s, cancel)
    duration_ms = (time.monotonic() - start) * 1000
    logger.debug(
        "pid %d ended with exit code %d after %.1f ms",
        child.pid,
        exit_code,
        duration_ms,
    )

    outcome = AttemptOutcome(
        status=InvocationStatus.FAILED,
        started_at=started_at,
        finished_at=utcnow(),
        duration_ms=duration_ms,
        logs=_read_logs(logs.fileno()),
        exit_code=exit_code,
        peak_memory_kb=peak_kb,
    )
    if stopped is not None:
        _describe_stop(outcome, stopped, spec)
    elif exit_code == 0 and (document := _read_report(report.fileno())):
        _describe_report(outcome, document, spec)
    else:
        _describe_crash(outcome, spec)
    return outcome


def _request(spec: AttemptSpec, result_fd: int, deadline_epoch: float) -> bytes:
    """The JSON the bootstrap reads on stdin: what to run, and under what."""
    return json.dumps(
        {
            "code_dir": str(spec.code_dir),
            "layer_dirs": [str(path) for path in spec.layer_dirs],
            "handler": spec.handler,
            "event": spec.event,
            "function_id": spec.function_id,
            "version": spec.version,
            "job_id": spec.job_id,
            "attempt": spec.attempt,
            "deadline_epoch": deadline_epoch,
            "rlimits": rlimits_for(spec.memory_mb, spec.timeout_s),
            "result_fd": result_fd,
            "max_result_bytes": MAX_RESULT_BYTES,
            "parent_pid": os.getpid(),
        }
    ).encode()


def _environment(spec: AttemptSpec, workdir: Path) -> dict[str, str]:
    """The child's whole environment: safe defaults, then the function's own.

    Nothing is inherited from this process, whose environment holds the
    database URL and keys. HOME and TMPDIR point into the private folder so
    whatever the handler leaves there is removed with it.
    """
    # TODO: the handler runs as the worker's user, so it can still read the
    # worker's files and /proc/<ppid>/environ and, as root, lift its own
    # limits; keeping secrets and limits from it needs an unprivileged user
    # of its own.
    env = {
        "PATH": DEFAULT_PATH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
    }
    env.update(spec.env)
    return env


def _wait(
    child: subprocess.Popen, deadline: float, cancel: threading.Event | None
) -> tuple[InvocationStatus | None, int, int | None]:
    """Wait for the child, stopping it at ``deadline`` or when cancelled.

    Returns why we stopped it (``None`` when it ended by itself), its exit
    code and the last peak memory seen while it ran. Whatever happens, the
    child is reaped and its process group killed before this returns.

    The peak is read from ``/proc`` rather than from ``wait4``'s
    ``ru_maxrss``: Linux carries the parent's high-water mark over fork and
    exec into that figure, so every attempt of a large worker would report
    the worker's size.
    """
    pid = child.pid
    stopped = None
    peak_kb = None
    exited = _exit_notifier(pid)
    try:
        delay = POLL_MIN_S
        while not _has_exited(pid):
            # Popen returned after the exec, so this is the child's own peak.
            peak_kb = bootstrap.peak_memory_kb(pid) or peak_kb
            now = time.monotonic()
            if now >= deadline:
                stopped = InvocationStatus.TIMED_OUT
                break
            if cancel is not None and cancel.is_set():
                stopped = InvocationStatus.CANCELLED
                break

            if exited is not None:
                # Woken the moment the child exits; the timeout only paces
                # the checks of the clock, the cancel flag and the memory.
                exited.poll(min(POLL_MAX_S, deadline - now) * 1000)
                continue
            pause = min(delay, deadline - now)
            if cancel is None:
                time.sleep(pause)
            else:
                cancel.wait(pause)
            delay = min(delay * 2, POLL_MAX_S)

        if stopped is not None:
            _stop(pid)
    finally:
        # Kill what is left of the group while the child is still an unreaped
        # zombie: until it is reaped its pid, and so the group's id, cannot be
        # given to an unrelated process.
        # TODO: a grandchild that starts its own session or group escapes this
        # kill, and one the handler starts survives a worker that dies (only
        # the child has a parent-death signal); a cgroup per attempt would
        # hold them all.
        _signal_group(pid, signal.SIGKILL)
        if exited is not None:
            os.close(exited.fd)
        _, wait_status = os.waitpid(pid, 0)

        # Reaped here, not by Popen: tell it, so it never waits on a pid that
        # may by then belong to another attempt.
        child.returncode = os.waitstatus_to_exitcode(wait_status)

    return stopped, child.returncode, peak_kb


class _ExitNotifier:
    """Sleeps until a process exits, on a pidfd: no polling delay."""

    def __init__(self, fd: int):
        self.fd = fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def poll(self, timeout_ms: float) -> None:
        self._poll.poll(max(timeout_ms, 0))


def _exit_notifier(pid: int) -> _ExitNotifier | None:
    """Where Linux offers a pidfd, a way to sleep until ``pid`` exits;
    ``None`` means polling with short sleeps."""
    try:
        return _ExitNotifier(os.pidfd_open(pid))
    except (AttributeError, OSError):
        return None


def _has_exited(pid: int) -> bool:
    """Whether the child has ended, leaving it unreaped."""
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
    return os.waitid(os.P_PID, pid, flags) is not None


def _stop(pid: int) -> None:
    """SIGTERM the child's group, then SIGKILL it after the grace period."""
    _signal_group(pid, signal.SIGTERM)
    give_up = time.monotonic() + KILL_GRACE_S
    while not _has_exited(pid) and time.monotonic() < give_up:
        time.sleep(POLL_MAX_S)
    _signal_group(pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def _read_report(fd: int) -> dict[str, Any] | None:
    """The bootstrap's report, ``None`` if it wrote none.

    A report that is too big or not a JSON object was not written by the
    bootstrap; it reads as an invalid result.
    """
    size = os.fstat(fd).st_size
    if size == 0:
        return None

    invalid = {"ok": False, "type": "InvalidResult", "traceback": None}
    if size > MAX_REPORT_BYTES:
        return invalid | {"message": f"the result channel holds {size} bytes"}
    try:
        document = json.loads(os.pread(fd, size, 0))
    except ValueError:
        document = None
    if not isinstance(document, dict) or "ok" not in document:
        return invalid | {"message": "the result channel holds no valid report"}
    return document


def _read_logs(fd: int) -> str:
    """The last :data:`MAX_LOG_BYTES` of output, after a note of what was cut."""
    size = os.fstat(fd).st_size
    skipped = max(0, size - MAX_LOG_BYTES)
    text = os.pread(fd, MAX_LOG_BYTES, skipped).decode("utf-8", errors="replace")
    if skipped:
        return f"[{skipped} earlier bytes of output dropped]\n{text}"
    return text


def _describe_stop(
    outcome: AttemptOutcome, stopped: InvocationStatus, spec: AttemptSpec
) -> None:
    outcome.status = stopped
    if stopped is InvocationStatus.TIMED_OUT:
        outcome.error_type = "TimeoutError"
        outcome.error = f"timed out after {float(spec.timeout_s)} s"
    else:
        outcome.error_type = "Cancelled"
        outcome.error = "cancelled while running"


def _describe_report(
    outcome: AttemptOutcome, document: dict[str, Any], spec: AttemptSpec
) -> None:
    # The child measures its peak last thing, which beats our last sample.
    outcome.peak_memory_kb = document.get("peak_memory_kb") or outcome.peak_memory_kb
    if document["ok"]:
        outcome.status = InvocationStatus.SUCCEEDED
        outcome.result = document.get("result")
        return

    error_type = str(document.get("type") or "Exception")
    message = _one_line(str(document.get("message") or ""))
    if error_type == "MemoryError":
        message = f"{message or 'out of memory'} (memory limit {spec.memory_mb} MiB)"

    outcome.error_type = error_type
    outcome.error = f"{error_type}: {message}" if message else error_type
    outcome.traceback = document.get("traceback")


def _describe_crash(outcome: AttemptOutcome, spec: AttemptSpec) -> None:
    """The child ended without a report: say how, as far as we can tell."""
    code = outcome.exit_code
    if code == -signal.SIGXCPU:
        # The CPU limit only ends a handler that keeps several cores busy.
        cpu_s = rlimits_for(spec.memory_mb, spec.timeout_s)["RLIMIT_CPU"][0]
        outcome.status = InvocationStatus.TIMED_OUT
        outcome.error_type = "TimeoutError"
        outcome.error = f"used up its CPU time limit of {cpu_s} s"
        return

    # TODO: native code that aborts when the memory limit refuses it an
    # allocation shows up here as a plain crash; nothing in the wait status
    # says the limit was the cause.
    outcome.error_type = "Crash"
    if code is not None and code < 0:
        outcome.error = f"killed by signal {-code} ({_signal_name(-code)})"
    else:
        outcome.error = f"exited with status {code} without a result"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "unknown signal"


def _one_line(message: str) -> str:
    """The first line of ``message``, marked when more lines follow."""
    lines = message.strip().splitlines()
    if not lines:
        return ""
    return lines[0] + (" ..." if len(lines) > 1 else "")


def _remove_tree(path: Path) -> None:
    """Remove the private folder, even parts the handler made read-only."""
    # A folder must be writable to empty it, and readable to be walked into,
    # so each one is opened up before the walk descends into it.
    _make_writable(path)
    for folder, subfolders, _ in os.walk(path):
        for name in subfolders:
            _make_writable(os.path.join(folder, name))
    shutil.rmtree(path, ignore_errors=True)

    if path.exists():
        logger.debug("could not remove the attempt folder %s", path)


def _make_writable(folder: str | Path) -> None:
    if os.path.islink(folder):
        return
    try:
        os.chmod(folder, 0o700)
    except OSError:
        pass
