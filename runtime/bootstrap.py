"""The child side of an attempt: lock the process down, call the handler once.

The executor starts this file as a script in a fresh interpreter run with
``python -I``, so it may import nothing but the standard library. It reads the
attempt's request, one JSON object, on stdin; applies the resource limits in
it; puts the function's folder and then its layers on ``sys.path``; imports
the handler and calls it with the event and a :class:`Context`. It then writes
one JSON document to the result descriptor named in the request, and nothing
else ever goes there::

    {"ok": true, "result": ...}
    {"ok": false, "type": ..., "message": ..., "traceback": ...}

Whatever the handler prints goes to stdout and stderr, which the executor
keeps as the attempt's logs. Once the document is written the process ends at
once, so threads the handler left running cannot hold the attempt open.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import resource
import signal
import sys
import time
import types
from datetime import UTC, datetime
from typing import Any

# From <linux/prctl.h>: ask for a signal when the parent thread exits.
PR_SET_PDEATHSIG = 1

# Enough of a message or a traceback to understand a failure; a handler that
# raises with megabytes of text should not crowd out its own result.
MAX_MESSAGE_CHARS = 4096
MAX_TRACEBACK_CHARS = 64 * 1024

# Written when the process is too short of memory to describe its failure:
# building these bytes now means reporting needs no allocation later.
OUT_OF_MEMORY_REPORT = json.dumps(
    {"ok": False, "type": "MemoryError", "message": "", "traceback": None}
).encode()

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Context:
    """What a handler learns about its attempt, passed as its second argument.

    ``deadline`` is the moment the attempt will be stopped, as an aware UTC
    ``datetime``; :meth:`remaining_seconds` counts down to it. ``job_id`` is
    ``None`` for a synchronous call. ``logger`` writes to stderr, so its lines
    land in the attempt's logs.
    """

    def __init__(
        self,
        function_id: str,
        version: int,
        job_id: str | None,
        attempt: int,
        deadline_epoch: float,
    ) -> None:
        self.function_id = function_id
        self.version = version
        self.job_id = job_id
        self.attempt = attempt
        self.deadline = datetime.fromtimestamp(deadline_epoch, UTC)
        self.logger = logging.getLogger("handler")
        self._deadline_epoch = deadline_epoch

    def remaining_seconds(self) -> float:
        """Seconds left before the attempt is stopped, never below zero."""
        return max(0.0, self._deadline_epoch - time.time())

    def __repr__(self) -> str:
        return (
            f"Context(function_id={self.function_id!r}, version={self.version}, "
            f"job_id={self.job_id!r}, attempt={self.attempt})"
        )


def main() -> None:
    """Run the attempt described on stdin, then end the process."""
    request = json.loads(sys.stdin.buffer.read())
    result_fd = request["result_fd"]

    _die_with_parent(request["parent_pid"])
    _apply_limits(request["rlimits"])
    _close_side_channels(result_fd)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=LOG_FORMAT)

    try:
        report = _run(request)
    except MemoryError:
        report = OUT_OF_MEMORY_REPORT
    _write_report(result_fd, _with_peak_memory(report))

    # Skip interpreter shutdown: it would wait for threads the handler left
    # behind, and the attempt is over once its report is written.
    _flush_output()
    os._exit(0)


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process if the thread that started it ends.

    Only Linux offers this; elsewhere an orphaned attempt runs on until it
    ends by itself or spends its CPU time.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(
            PR_SET_PDEATHSIG,
            ctypes.c_ulong(signal.SIGKILL),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
    except (ImportError, OSError, AttributeError):
        return

    # The parent may have gone before the request above took effect.
    if os.getppid() != parent_pid:
        os._exit(1)


def _apply_limits(rlimits: dict[str, list[int]]) -> None:
    """Set each ``(soft, hard)`` limit, never above the hard limit we were given.

    A process without CAP_SYS_RESOURCE cannot raise a hard limit again,
    which is what keeps the handler inside them.
    """
    for name, (soft, hard) in rlimits.items():
        which = getattr(resource, name, None)
        if which is None:
            continue

        _, inherited_hard = resource.getrlimit(which)
        if inherited_hard != resource.RLIM_INFINITY:
            hard = min(hard, inherited_hard)
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))


def _close_side_channels(result_fd: int) -> None:
    """Give the handler an empty stdin and keep the result descriptor private.

    The request already read from stdin has no further use, and processes
    the handler starts should not inherit the channel the result travels on.
    """
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.set_inheritable(result_fd, False)


def _run(request: dict[str, Any]) -> bytes:
    """Call the handler and encode how it went as the report's bytes."""
    sys.path[0:0] = [request["code_dir"], *request["layer_dirs"]]
    context = Context(
        function_id=request["function_id"],
        version=request["version"],
        job_id=request["job_id"],
        attempt=request["attempt"],
        deadline_epoch=request["deadline_epoch"],
    )

    try:
        handler = _load_handler(request["handler"])
        result = handler(request["event"], context)
        if isinstance(result, types.CoroutineType):
            import asyncio

            result = asyncio.run(result)
    except BaseException as exc:  # sys.exit() in a handler is a failure too
        return _failure_report(exc)

    return _result_report(result, request["max_result_bytes"])


def _load_handler(name: str) -> Any:
    """Import ``module.attribute`` (the module may be dotted) and return it."""
    module_name, _, attribute = name.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"handler {name!r} is not of the form 'module.attribute'")

    handler = getattr(importlib.import_module(module_name), attribute)
    if not callable(handler):
        raise TypeError(f"handler {name!r} is not callable")
    return handler


def _failure_report(exc: BaseException) -> bytes:
    """Describe an exception the handler raised, or its import did."""
    # Imported only for a failure: every attempt pays for what starts it.
    import traceback

    # Frames hold the handler's locals; dropping them first gives back the
    # memory of a handler that ran out of it, so the report can be built.
    traceback.clear_frames(exc.__traceback__)

    exc_type = type(exc)
    type_name = exc_type.__qualname__
    if exc_type.__module__ != "builtins":
        type_name = f"{exc_type.__module__}.{type_name}"

    lines = traceback.format_exception(exc)
    return json.dumps(
        {
            "ok": False,
            "type": type_name,
            "message": _safe_str(exc)[:MAX_MESSAGE_CHARS],
            "traceback": "".join(lines)[-MAX_TRACEBACK_CHARS:],
        }
    ).encode()


def _result_report(result: Any, max_result_bytes: int) -> bytes:
    """Encode the handler's return value, or say why it cannot be returned."""
    try:
        body = json.dumps(result, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        return _invalid_result(f"the return value is not JSON-serialisable: {exc}")

    if len(body) > max_result_bytes:
        return _invalid_result(
            f"the return value is {len(body)} bytes of JSON, "
            f"over the limit of {max_result_bytes} bytes"
        )
    return b'{"ok": true, "result": ' + body + b"}"


def _invalid_result(message: str) -> bytes:
    return json.dumps(
        {"ok": False, "type": "InvalidResult", "message": message, "traceback": None}
    ).encode()


def _safe_str(exc: BaseException) -> str:
    """``str(exc)``, even for exceptions whose ``__str__`` itself raises."""
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def _with_peak_memory(report: bytes) -> bytes:
    """Add the process's peak memory to the report, measured now, at its end.

    The field is spliced in at the front so a large result is not encoded a
    second time.
    """
    peak_kb = peak_memory_kb()
    if peak_kb is None:
        return report
    return b'{"peak_memory_kb": %d, ' % peak_kb + report[1:]


def peak_memory_kb(pid: int | str = "self") -> int | None:
    """The peak resident memory of a process in KiB, ``None`` if unknown.

    The executor reads its running child's figure with this too.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError, MemoryError):
        pass
    return None


def _write_report(fd: int, report: bytes) -> None:
    """Replace whatever the descriptor holds with ``report``.

    The handler could have written to the descriptor itself; truncating
    first means the executor reads exactly one document.
    """
    os.ftruncate(fd, 0)
    offset = 0
    while offset < len(report):
        offset += os.pwrite(fd, report[offset:], offset)


def _flush_output() -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


if __name__ == "__main__":
    main()
