"""The client commands: deploy functions and layers, and set secrets.

They talk to a running gateway at ``ERRAND_URL`` with the key in
``ERRAND_API_KEY``; :func:`register` adds them to the ``errand`` command.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import requests

DEFAULT_URL = "http://127.0.0.1:8000"

# Long enough to upload the largest archive the gateway takes on a slow link.
TIMEOUT_S = 300

# Every member gets this date, so that packing an unchanged folder again
# gives the same bytes, which the gateway recognises as nothing new.
FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def wait_until_healthy(
    url: str, alive: Callable[[], bool], timeout_s: float, step_s: float = 0.1
) -> bool:
    """Whether the gateway at ``url`` answers its health check in time.

    Gives up early, with ``False``, once ``alive()`` says the processes
    that should serve it have stopped.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            if requests.get(f"{url}/healthz", timeout=1).ok:
                return True
        except requests.RequestException:
            pass
        time.sleep(step_s)
    return False


def pack(folder: Path) -> bytes:
    """``folder``'s files as a zip archive, the same bytes for the same files.

    Skips dot-files and dot-folders, ``__pycache__`` and ``*.pyc``. A link
    to a file is packed as the file it points to; links to folders are not
    followed.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in _files(folder):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), FIXED_DATE)
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _files(folder: Path) -> Iterator[Path]:
    """The files to pack, in a stable order."""
    for parent, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not _skipped(name))
        for name in sorted(files):
            path = Path(parent, name)
            if not _skipped(name) and path.is_file():
                yield path


def _skipped(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__" or name.endswith(".pyc")


def manifest_name(folder: Path) -> str | None:
    """The ``name`` in the folder's ``function.toml``, if it gives one.

    A manifest that does not parse is left for the gateway to refuse, with a
    better message than we could give here.
    """
    try:
        document = tomllib.loads((folder / "function.toml").read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    name = document.get("name")
    return name if isinstance(name, str) else None


def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """Send a request to the gateway; its JSON answer, or a ClickException."""
    url = (os.environ.get("ERRAND_URL") or DEFAULT_URL).rstrip("/")
    headers = kwargs.pop("headers", {})
    key = os.environ.get("ERRAND_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"

    try:
        response = requests.request(
            method, url + path, headers=headers, timeout=TIMEOUT_S, **kwargs
        )
    except requests.ConnectionError:
        raise click.ClickException(f"the gateway is not reachable at {url}") from None
    except requests.Timeout:
        raise click.ClickException(
            f"the gateway at {url} did not answer within {TIMEOUT_S} s"
        ) from None

    if response.status_code == 401 and not key:
        raise click.ClickException(
            f"the gateway at {url} needs an API key: set ERRAND_API_KEY"
        )
    if not response.ok:
        raise click.ClickException(_error_message(response))
    return response.json()


def _error_message(response: requests.Response) -> str:
    """The envelope's message and field errors, or the status line if none."""
    try:
        error = response.json()["error"]
        message = str(error["message"])
    except (ValueError, KeyError, TypeError):
        return f"the gateway answered {response.status_code} {response.reason}"

    fields = error.get("fields") or {}
    details = "; ".join(f"{name}: {text}" for name, text in fields.items())
    if details and details not in message:
        message = f"{message} ({details})"
    return message


def _upload(path: str, folder: Path) -> dict[str, Any]:
    return call(
        "PUT", path, data=pack(folder), headers={"Content-Type": "application/zip"}
    )


def _new_or_not(body: dict[str, Any]) -> str:
    return "new" if body["created"] else "unchanged"


FOLDER = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command()
@click.argument("path", type=FOLDER)
@click.option("--name", help="Function id (default: the manifest's name or PATH's).")
def deploy(path: Path, name: str | None) -> None:
    """Deploy the function in the folder PATH."""
    name = name or manifest_name(path) or path.resolve().name
    body = _upload(f"/functions/{name}", path)
    click.echo(f"function  {body['functionId']}")
    click.echo(f"version   {body['version']} ({_new_or_not(body)})")
    click.echo(f"sha256    {body['sha256']}")


@click.group()
def layers() -> None:
    """Manage layers: shared code functions put on their import path."""


@layers.command("deploy")
@click.argument("path", type=FOLDER)
@click.option("--name", help="Layer id (default: PATH's folder name).")
def layers_deploy(path: Path, name: str | None) -> None:
    """Upload the folder PATH as a layer."""
    name = name or path.resolve().name
    body = _upload(f"/layers/{name}", path)
    click.echo(f"layer     {body['name']}")
    click.echo(f"version   {body['version']} ({_new_or_not(body)})")
    click.echo(f"sha256    {body['sha256']}")


@click.group("secrets")
def secrets_group() -> None:
    """Manage secrets, handed to the functions that name them."""


@secrets_group.command("set")
@click.argument("name")
def secrets_set(name: str) -> None:
    """Set the secret NAME to the value read from standard input."""
    if sys.stdin.isatty():
        value = click.prompt(f"value of {name}", hide_input=True)
    else:
        value = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if not value:
        raise click.ClickException("the value is empty")

    body = call("PUT", f"/secrets/{name}", json={"value": value})
    click.echo(f"secret {body['name']} {'created' if body['created'] else 'replaced'}")


def register(group: click.Group) -> None:
    """Add the client commands to ``group``."""
    group.add_command(deploy)
    group.add_command(layers)
    group.add_command(secrets_group)
