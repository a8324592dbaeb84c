"""From a function id to a ready attempt, and the synchronous call.

:func:`prepare` is shared by the worker and the gateway: it finds the
version of the function that runs, unpacks it and its layers, and builds the
handler's environment from the manifest and the secrets it names.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from errors import ConfigError, Conflict
from models import Invocation, Layer, Secret
from runtime import packages, secretbox
from runtime.executor import KILL_GRACE_S, AttemptOutcome, AttemptSpec, run_attempt
from settings import Settings

logger = logging.getLogger(__name__)

# An attempt must end inside the lease of the job it runs, or another worker
# reaps the job and runs it a second time while the first is still going.
# From the claim on, the lease also covers unpacking the version, the
# executor's SIGTERM-to-SIGKILL grace after the timeout, and settling the
# job; and the worker that reaps may read a clock a little ahead of ours.
# The attempt's timeout therefore stops short of the lease by the kill grace
# plus a slack: a tenth of the lease, at least LEASE_SLACK_S. Synchronous
# calls hold no lease but are capped alike, so that a function gets the same
# time however it is called.
LEASE_SLACK_S = 1.0
LEASE_SLACK_SHARE = 0.1

# The shortest timeout a manifest may ask for; a lease must allow at least it.
MIN_TIMEOUT_S = 1.0


def attempt_timeout_s(manifest_timeout_s: float, visibility_timeout_s: float) -> float:
    """The manifest's timeout, capped so an attempt ends inside its lease."""
    slack = max(LEASE_SLACK_S, visibility_timeout_s * LEASE_SLACK_SHARE)
    budget = visibility_timeout_s - KILL_GRACE_S - slack
    if budget < MIN_TIMEOUT_S:
        # Settings refuse a lease this short at start-up; this guards the
        # arithmetic should the kill grace or the slack ever grow.
        raise ConfigError(
            f"a visibility timeout of {visibility_timeout_s} s leaves no time for "
            f"an attempt; it must be at least "
            f"{MIN_TIMEOUT_S + KILL_GRACE_S + LEASE_SLACK_S} s"
        )
    return min(float(manifest_timeout_s), budget)


def prepare(
    function_id: str,
    event: Any,
    *,
    job_id: str | None = None,
    attempt: int = 1,
    settings: Settings,
) -> tuple[AttemptSpec, int]:
    """The attempt to run ``event`` through ``function_id``, and its version.

    Raises ``NotFound`` for an unknown function, and ``Conflict`` saying
    what is gone when a layer or secret the manifest names was deleted after
    the deploy.
    """
    version = packages.current_version(function_id)
    manifest = json.loads(version.manifest)
    secrets = _secrets(function_id, manifest["secrets"], settings)

    spec = AttemptSpec(
        code_dir=packages.checkout(version, settings),
        handler=manifest["handler"],
        event=event,
        function_id=function_id,
        version=version.version,
        timeout_s=attempt_timeout_s(manifest["timeout"], settings.visibility_timeout_s),
        memory_mb=manifest["memory"],
        env={**manifest["env"], **secrets},
        layer_dirs=_layer_dirs(function_id, manifest["layers"], settings),
        job_id=job_id,
        attempt=attempt,
        redact=tuple(secrets.values()),
    )
    return spec, version.version


def _layer_dirs(function_id: str, names: list[str], settings: Settings) -> list[Path]:
    if not names:
        return []
    layers = {
        layer.name: layer
        for layer in Layer.select(Layer.name, Layer.sha256).where(Layer.name.in_(names))
    }
    gone = [name for name in names if name not in layers]
    if gone:
        raise Conflict(
            f"function {function_id!r} needs layers that were deleted: "
            f"{', '.join(gone)}; upload them again"
        )
    return [packages.checkout_layer(layers[name], settings) for name in names]


def _secrets(function_id: str, names: list[str], settings: Settings) -> dict[str, str]:
    """The secrets ``names``, decrypted: exactly these, no others."""
    if not names:
        return {}
    stored = {row.name: row for row in Secret.select().where(Secret.name.in_(names))}
    gone = [name for name in names if name not in stored]
    if gone:
        raise Conflict(
            f"function {function_id!r} needs secrets that were deleted: "
            f"{', '.join(gone)}; set them again"
        )
    return {
        name: secretbox.decrypt(name, stored[name].ciphertext, settings)
        for name in names
    }


def invoke_sync(
    function_id: str, event: Any, settings: Settings
) -> tuple[AttemptOutcome, Invocation]:
    """Run one attempt now and record it as an ``http`` invocation.

    A handler's failure is in the outcome, not raised; errors are raised
    only for what stops the attempt from starting.
    """
    spec, version = prepare(function_id, event, settings=settings)
    outcome = run_attempt(spec)

    invocation = Invocation.create(
        function_id=function_id,
        version=version,
        trigger="http",
        job=None,
        attempt=1,
        started_at=outcome.started_at,
        **Invocation.outcome_columns(outcome),
    )
    logger.info(
        "invocation %s of %s v%d: %s in %.1f ms",
        invocation.id,
        function_id,
        version,
        outcome.status.value,
        outcome.duration_ms,
        extra={"action": "invoked", "invocation_id": invocation.id},
    )
    return outcome, invocation
