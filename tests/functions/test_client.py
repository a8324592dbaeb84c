"""The client commands, against the gateway in this process."""

from __future__ import annotations

import io
import os
import zipfile
from urllib.parse import urlsplit

import pytest
import requests
from click.testing import CliRunner

import client
from cli import main
from models import Secret


@pytest.fixture
def gateway(app, monkeypatch):
    """Route the client's HTTP requests to the app's test client."""
    test_client = app.test_client()

    def request(method, url, headers=None, timeout=None, **kwargs):
        answer = test_client.open(
            urlsplit(url).path, method=method, headers=headers, **kwargs
        )
        response = requests.Response()
        response.status_code = answer.status_code
        response._content = answer.get_data()
        return response

    monkeypatch.setattr(client.requests, "request", request)
    monkeypatch.setenv("ERRAND_API_KEY", "test-key")


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), input=stdin)


def test_packing_skips_caches_compiled_files_and_dot_files(tmp_path):
    (tmp_path / "main.py").write_text("x = 1\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "util.py").write_text("")
    (tmp_path / "lib" / "util.pyc").write_bytes(b"")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"")
    (tmp_path / ".env").write_text("SECRET=1\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref\n")

    archive = zipfile.ZipFile(io.BytesIO(client.pack(tmp_path)))

    assert sorted(archive.namelist()) == ["lib/util.py", "main.py"]


def test_packing_an_unchanged_folder_again_gives_the_same_bytes(tmp_path):
    (tmp_path / "main.py").write_text("x = 1\n")
    first = client.pack(tmp_path)

    os.utime(tmp_path / "main.py", (0, 0))

    assert client.pack(tmp_path) == first


def test_deploy_prints_the_version_and_whether_it_is_new(gateway, examples):
    first = run("deploy", str(examples / "hello"))
    again = run("deploy", str(examples / "hello"))

    assert first.exit_code == 0, first.output
    assert "function  hello" in first.output
    assert "version   1 (new)" in first.output
    assert "version   1 (unchanged)" in again.output


def test_deploy_takes_the_name_from_the_option_then_the_manifest(
    gateway, tmp_path, examples
):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "main.py").write_text("def handler(event, context):\n    return 1\n")
    (folder / "function.toml").write_text('name = "named"\nhandler = "main.handler"\n')

    by_manifest = run("deploy", str(folder))
    by_option = run("deploy", str(folder), "--name", "chosen")

    assert "function  named" in by_manifest.output
    assert "function  chosen" in by_option.output


def test_a_refused_deploy_prints_the_reason_and_fails(gateway, tmp_path):
    (tmp_path / "main.py").write_text("")

    result = run("deploy", str(tmp_path), "--name", "broken")

    assert result.exit_code != 0
    assert "no function.toml" in result.output


def test_layers_deploy_uploads_the_folder(gateway, examples):
    result = run("layers", "deploy", str(examples / "_layers" / "common"))

    assert result.exit_code == 0, result.output
    assert "layer     common" in result.output


def test_secrets_set_reads_the_value_without_its_trailing_newline(gateway, settings):
    from runtime import secretbox

    result = run("secrets", "set", "API_TOKEN", stdin="s3cret\n")

    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    stored = Secret.get_by_id("API_TOKEN").ciphertext
    assert secretbox.decrypt("API_TOKEN", stored, settings) == "s3cret"


def test_an_unreachable_gateway_is_named(monkeypatch, examples):
    monkeypatch.setenv("ERRAND_URL", "http://127.0.0.1:9")

    result = run("deploy", str(examples / "hello"))

    assert result.exit_code != 0
    assert "not reachable at http://127.0.0.1:9" in result.output
