"""Fixtures for deploying packages, layers and secrets through the gateway.

Packages come from three places: the examples in ``functions/``, the small
test packages in ``packages/`` beside this file, and archives built here
from a ``{path: content}`` mapping, for the broken ones.
"""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

import client as client_commands
from models import Function, FunctionVersion

EXAMPLES = Path(__file__).resolve().parents[2] / "functions"
PACKAGES = Path(__file__).resolve().parent / "packages"

HELLO_MANIFEST = 'handler = "main.handler"\ntimeout = 5\n'
HELLO_CODE = "def handler(event, context):\n    return 'hi'\n"


def make_zip(
    files: dict[str, str | bytes], symlinks: dict[str, str] | None = None
) -> bytes:
    """An archive of ``files`` (path to content), plus ``symlinks`` (to target)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def hello_files(**extra: str | bytes) -> dict[str, str | bytes]:
    """A minimal valid package, with ``extra`` files added or replaced."""
    return {"function.toml": HELLO_MANIFEST, "main.py": HELLO_CODE, **extra}


def archive_of(source: Path | dict | bytes) -> bytes:
    if isinstance(source, Path):
        return client_commands.pack(source)
    if isinstance(source, dict):
        return make_zip(source)
    return source


@pytest.fixture
def deploy(client, auth) -> Callable:
    """``deploy("hello", source)``: PUT a function; the response.

    ``source`` is a folder, a ``{path: content}`` mapping or archive bytes.
    """

    def put(function_id: str, source: Path | dict | bytes, **kwargs):
        return client.put(
            f"/functions/{function_id}",
            data=archive_of(source),
            content_type=kwargs.pop("content_type", "application/zip"),
            headers=auth,
            **kwargs,
        )

    return put


@pytest.fixture
def deploy_layer(client, auth) -> Callable:
    """``deploy_layer("common", source)``: PUT a layer; the response."""

    def put(name: str, source: Path | dict | bytes):
        return client.put(
            f"/layers/{name}",
            data=archive_of(source),
            content_type="application/zip",
            headers=auth,
        )

    return put


@pytest.fixture
def set_secret(client, auth) -> Callable:
    """``set_secret("TOKEN", "value")``: PUT a secret; the response."""

    def put(name: str, value: str):
        return client.put(f"/secrets/{name}", json={"value": value}, headers=auth)

    return put


@pytest.fixture
def invoke(client, auth) -> Callable:
    """``invoke("hello", {"name": "Ada"})``: call a function now; the response."""

    def post(function_id: str, event: object = None):
        body = {} if event is None else {"event": event}
        return client.post(f"/functions/{function_id}/invoke", json=body, headers=auth)

    return post


@pytest.fixture
def nothing_stored(settings, database) -> Callable[[], None]:
    """Assert that no function, version or unpacked file exists."""

    def check() -> None:
        assert Function.select().count() == 0
        assert FunctionVersion.select().count() == 0
        packages_dir = settings.packages_dir
        assert not packages_dir.exists() or not any(packages_dir.iterdir())

    return check


@pytest.fixture(name="make_zip")
def make_zip_fixture() -> Callable[..., bytes]:
    """:func:`make_zip`, for tests to build archives with."""
    return make_zip


@pytest.fixture(name="hello_files")
def hello_files_fixture() -> Callable[..., dict]:
    """:func:`hello_files`, for tests to start a package from."""
    return hello_files


@pytest.fixture
def examples() -> Path:
    """The example functions shipped in ``functions/``."""
    return EXAMPLES


@pytest.fixture
def samples() -> Path:
    """The test packages in ``packages/`` beside this file."""
    return PACKAGES
