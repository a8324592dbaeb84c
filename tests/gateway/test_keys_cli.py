"""``errand keys``: stored API keys, made, listed and revoked from the CLI."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import models
from app import hash_key
from cli import main


@pytest.fixture
def errand(settings):
    """Run ``errand ...`` against the test's data folder."""
    runner = CliRunner()
    env = {
        "ERRAND_DATA_DIR": str(settings.data_dir),
        "ERRAND_DATABASE_URL": None,
        "ERRAND_API_KEY": None,
    }

    def run(*args: str):
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    return run


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_created_key_is_printed_once_and_stored_as_its_hash(app, errand):
    result = errand("keys", "create", "ci")

    key = result.stdout.strip()
    assert result.exit_code == 0
    assert key.startswith("errand_")
    stored = models.ApiKey.get(models.ApiKey.name == "ci")
    assert stored.key_hash == hash_key(key)
    assert key not in stored.key_hash
    assert "errand.db" in result.stderr


def test_a_created_key_authenticates_against_the_gateway(app, client, errand):
    key = errand("keys", "create", "ci").stdout.strip()

    response = client.get("/jobs", headers=bearer(key))

    assert response.status_code == 200


def test_a_revoked_key_answers_401(app, client, errand):
    key = errand("keys", "create", "ci").stdout.strip()

    result = errand("keys", "revoke", "ci")
    response = client.get("/jobs", headers=bearer(key))

    assert result.exit_code == 0
    assert result.stdout.strip() == "revoked ci"
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_revoking_one_key_leaves_the_others_working(app, client, errand):
    kept = errand("keys", "create", "kept").stdout.strip()
    errand("keys", "create", "gone")

    errand("keys", "revoke", "gone")

    assert client.get("/jobs", headers=bearer(kept)).status_code == 200


def test_keys_list_shows_names_never_keys(app, errand):
    first = errand("keys", "create", "beta").stdout.strip()
    second = errand("keys", "create", "alpha").stdout.strip()

    result = errand("keys", "list")

    names = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert names == ["alpha", "beta"]
    assert first not in result.output
    assert second not in result.output


def test_a_second_key_with_the_same_name_is_refused(app, errand):
    errand("keys", "create", "ci")

    result = errand("keys", "create", "ci")

    assert result.exit_code == 1
    assert "exists already" in result.output


def test_revoking_an_unknown_key_fails(app, errand):
    result = errand("keys", "revoke", "nobody")

    assert result.exit_code == 1
    assert "no key named 'nobody'" in result.output
