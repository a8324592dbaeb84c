"""The ``errand`` command: the worker, API keys, and the deploy client.

This is the only place that configures logging and reads the environment
into settings; each setting is listed in ``errand --help``.
"""

from __future__ import annotations

import logging
import os
import sys

import click
import peewee as pw

import models
import settings as settings_module
from app import hash_key, new_api_key
from errors import ConfigError
from models import iso_utc
from settings import redacted_url

ENVIRONMENT_HELP = """
\b
Settings (environment variables):
  ERRAND_DATA_DIR            data folder (default ./data)
  ERRAND_DATABASE_URL        peewee database URL (default SQLite in the data folder)
  ERRAND_API_KEY             a bootstrap API key, accepted besides stored keys
  ERRAND_SECRET_KEY          Fernet key for secrets (default: generated into
                             the data folder)
  ERRAND_MAX_EVENT_BYTES     largest enqueue or invoke body in bytes
                             (default 1 MiB)
  ERRAND_VISIBILITY_TIMEOUT  lease of a claimed job in seconds (default 1350)
  ERRAND_RETENTION_DAYS      days finished jobs are kept (default 7)
  ERRAND_BACKOFF_BASE_S      first retry delay in seconds (default 1)
  ERRAND_BACKOFF_CAP_S       longest retry delay in seconds (default 300)
  ERRAND_POLL_INTERVAL_S     idle worker's poll interval in seconds (default 0.5)
  ERRAND_MAX_LOST            times a job may lose its worker before it is
                             DEAD (default 5)
  ERRAND_URL                 gateway used by client commands
                             (default http://127.0.0.1:8000)
"""


def load_settings() -> settings_module.Settings:
    try:
        return settings_module.load()
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


def open_database() -> settings_module.Settings:
    config = load_settings()
    models.connect(config.database_url)
    return config


@click.group(epilog=ENVIRONMENT_HELP)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def main(verbose: bool) -> None:
    """Errand: deploy Python functions, call them, run them as durable jobs."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@main.command()
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=lambda: os.cpu_count() or 1,
    show_default="the number of CPUs",
    help="Attempts run at once.",
)
@click.option(
    "--grace",
    type=click.FloatRange(0, 3600),
    default=30.0,
    show_default=True,
    help="Seconds running attempts get to finish on SIGTERM or SIGINT.",
)
def worker(concurrency: int, grace: float) -> None:
    """Claim queued jobs and run them until stopped."""
    from runtime.worker import Worker

    config = open_database()
    Worker(config, concurrency=concurrency, grace_s=grace).run()


@main.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("create")
@click.argument("name")
def keys_create(name: str) -> None:
    """Make a key called NAME and print it; only its hash is stored."""
    config = open_database()
    key = new_api_key()
    try:
        models.ApiKey.create(name=name, key_hash=hash_key(key))
    except pw.IntegrityError:
        raise click.ClickException(f"a key named {name!r} exists already") from None
    # Only the key goes to stdout, so that it can be captured; the database
    # it was stored in goes to stderr, as the key works only against it.
    click.echo(key)
    click.echo(f"stored in {redacted_url(config.database_url)}", err=True)


@keys.command("list")
def keys_list() -> None:
    """List key names and when they were made (never the keys)."""
    open_database()
    for key in models.ApiKey.select().order_by(models.ApiKey.name):
        click.echo(f"{key.name}\t{iso_utc(key.created_at)}")


@keys.command("revoke")
@click.argument("name")
def keys_revoke(name: str) -> None:
    """Revoke the key called NAME."""
    open_database()
    if not models.ApiKey.delete().where(models.ApiKey.name == name).execute():
        raise click.ClickException(f"no key named {name!r}")
    click.echo(f"revoked {name}")


# Client commands (deploy, layers, secrets) talk to a running gateway.
import client  # noqa: E402

client.register(main)
