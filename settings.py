"""Errand's settings, read once from ``ERRAND_*`` environment variables.

Every knob has a documented default; a value that does not parse or lies
outside its accepted range stops start-up with a message naming the variable
and the range it accepts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from errors import ConfigError

MiB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """What the gateway and the worker are configured with."""

    data_dir: Path
    database_url: str
    api_key: str | None = None
    secret_key: str | None = None
    max_event_bytes: int = MiB
    visibility_timeout_s: float = 1350.0
    retention_days: float = 7.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    poll_interval_s: float = 0.5
    max_lost: int = 5

    @property
    def packages_dir(self) -> Path:
        """Where deployed archives are unpacked, one folder per sha256."""
        return self.data_dir / "packages"


def _number(env, name, default, low, high, kind=float):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a {kind.__name__}; accepted: {low}..{high}"
        ) from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} is out of range; accepted: {low}..{high}")
    return value


def load(env: dict[str, str] | None = None) -> Settings:
    """Build the settings from ``env`` (``os.environ`` when not given)."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("ERRAND_DATA_DIR") or "./data").resolve()
    database_url = env.get("ERRAND_DATABASE_URL") or f"sqlite:///{data_dir}/errand.db"
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        api_key=env.get("ERRAND_API_KEY") or None,
        secret_key=env.get("ERRAND_SECRET_KEY") or None,
        max_event_bytes=_number(
            env, "ERRAND_MAX_EVENT_BYTES", MiB, 1024, 64 * MiB, int
        ),
        # The shortest lease still leaves an attempt one second after the
        # executor's kill grace and the slack for settling (runtime.invoke).
        visibility_timeout_s=_number(
            env, "ERRAND_VISIBILITY_TIMEOUT", 1350.0, 5.0, 86400.0
        ),
        retention_days=_number(env, "ERRAND_RETENTION_DAYS", 7.0, 0.0, 3650.0),
        backoff_base_s=_number(env, "ERRAND_BACKOFF_BASE_S", 1.0, 0.0, 3600.0),
        backoff_cap_s=_number(env, "ERRAND_BACKOFF_CAP_S", 300.0, 0.0, 86400.0),
        poll_interval_s=_number(env, "ERRAND_POLL_INTERVAL_S", 0.5, 0.01, 60.0),
        max_lost=_number(env, "ERRAND_MAX_LOST", 5, 0, 1000, int),
    )


def redacted_url(url: str) -> str:
    """A database URL without its password, fit for a log line."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
