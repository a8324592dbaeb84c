"""Secrets: encrypted at rest, handed only to the functions that name them,
and never shown by the API or written to the gateway's logs."""

from __future__ import annotations

import logging
import os
import threading

import pytest
from cryptography.fernet import Fernet

import settings as settings_module
from errors import ErrandError
from models import Secret
from runtime import secretbox

VALUE = "tok-3f9c2a7e5b1d"

NAMES_THE_SECRET = 'handler = "main.handler"\nsecrets = ["API_TOKEN"]\n'
SHOWS_ENV = "import os\n\ndef handler(event, context):\n    return dict(os.environ)\n"


def test_setting_a_secret_creates_then_replaces_it(set_secret):
    created = set_secret("API_TOKEN", VALUE)
    replaced = set_secret("API_TOKEN", "another")

    assert created.status_code == 201
    assert created.json["created"] is True
    assert replaced.status_code == 200
    assert replaced.json["created"] is False


def test_listing_secrets_shows_names_and_times_only(client, auth, set_secret):
    set_secret("API_TOKEN", VALUE)

    response = client.get("/secrets", headers=auth)

    assert response.status_code == 200
    (listed,) = response.json["secrets"]
    assert set(listed) == {"name", "createdAt", "updatedAt"}
    assert listed["name"] == "API_TOKEN"


def test_the_stored_ciphertext_is_not_the_value(set_secret):
    set_secret("API_TOKEN", VALUE)

    ciphertext = bytes(Secret.get_by_id("API_TOKEN").ciphertext)

    assert VALUE.encode() not in ciphertext


def test_a_secret_reaches_only_the_functions_that_name_it(
    deploy, invoke, set_secret, make_zip
):
    set_secret("API_TOKEN", VALUE)
    deploy("named", make_zip({"function.toml": NAMES_THE_SECRET, "main.py": SHOWS_ENV}))
    deploy(
        "unnamed",
        make_zip({"function.toml": 'handler = "main.handler"\n', "main.py": SHOWS_ENV}),
    )

    named = invoke("named").json["result"]
    unnamed = invoke("unnamed").json["result"]

    assert named["API_TOKEN"] == VALUE
    assert "API_TOKEN" not in unnamed
    assert VALUE not in str(unnamed)


def test_the_value_never_appears_in_answers_or_logs(
    client, auth, deploy, deploy_layer, invoke, set_secret, examples, caplog
):
    caplog.set_level(logging.DEBUG)
    answers = [
        set_secret("GREETER_TOKEN", VALUE),
        deploy_layer("common", examples / "_layers" / "common"),
        deploy("greeter", examples / "greeter"),
        invoke("greeter", {"name": "Ada"}),
        client.get("/secrets", headers=auth),
        client.get("/functions/greeter", headers=auth),
    ]
    invocation_id = answers[3].json["invocationId"]
    answers.append(client.get(f"/invocations/{invocation_id}", headers=auth))

    assert answers[3].json["result"]["tokenLength"] == len(VALUE)
    for answer in answers:
        assert answer.status_code < 300, answer.json
        assert VALUE not in answer.get_data(as_text=True)
    assert VALUE not in caplog.text


LEAKS_THE_SECRET = (
    "import os\n\n"
    "def handler(event, context):\n"
    "    print('token is', os.environ['API_TOKEN'])\n"
    "    raise ValueError('bad token ' + os.environ['API_TOKEN'])\n"
)


def test_a_leaked_value_is_masked_in_the_error_traceback_and_logs(
    client, auth, deploy, invoke, set_secret, make_zip
):
    set_secret("API_TOKEN", VALUE)
    deploy(
        "leaky",
        make_zip({"function.toml": NAMES_THE_SECRET, "main.py": LEAKS_THE_SECRET}),
    )

    response = invoke("leaky")
    invocation_id = response.json["error"]["invocationId"]
    invocation = client.get(f"/invocations/{invocation_id}", headers=auth).json

    assert response.status_code == 502
    assert VALUE not in response.get_data(as_text=True)
    assert response.json["error"]["message"] == "ValueError: bad token [redacted]"
    assert "token is [redacted]" in invocation["logs"]
    assert "[redacted]" in invocation["traceback"]
    assert VALUE not in str(invocation)


def test_a_secret_deleted_after_deploy_fails_the_call_clearly(
    client, auth, deploy, invoke, set_secret, make_zip
):
    set_secret("API_TOKEN", VALUE)
    deploy("named", make_zip({"function.toml": NAMES_THE_SECRET, "main.py": SHOWS_ENV}))

    assert client.delete("/secrets/API_TOKEN", headers=auth).status_code == 204
    response = invoke("named")

    assert response.status_code == 409
    assert "API_TOKEN" in response.json["error"]["message"]
    assert "deleted" in response.json["error"]["message"]


def test_deleting_an_unknown_secret_is_404(client, auth, database):
    assert client.delete("/secrets/NOPE", headers=auth).status_code == 404


@pytest.mark.parametrize(
    "name, body",
    [
        ("lower_case", {"value": "x"}),
        ("API_TOKEN", {"value": ""}),
        ("API_TOKEN", {"value": 12}),
        ("API_TOKEN", {}),
        ("API_TOKEN", {"value": "x" * (64 * 1024 + 1)}),
    ],
)
def test_a_bad_name_or_value_is_refused(client, auth, database, name, body):
    response = client.put(f"/secrets/{name}", json=body, headers=auth)

    assert response.status_code == 400
    assert Secret.select().count() == 0


def test_the_key_file_is_made_once_and_private(settings):
    path = settings.data_dir / secretbox.KEY_FILE

    token = secretbox.encrypt(VALUE, settings)

    assert os.stat(path).st_mode & 0o777 == 0o600
    assert secretbox.decrypt("API_TOKEN", token, settings) == VALUE
    assert secretbox.read_or_create_key(path) == path.read_bytes().strip()


def test_processes_racing_to_make_the_key_all_read_the_same_one(tmp_path):
    path = tmp_path / "secret.key"
    keys, start = [], threading.Barrier(8)

    def make() -> None:
        start.wait()
        keys.append(secretbox.read_or_create_key(path))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(keys)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]


def test_a_key_from_the_environment_is_used_instead_of_a_file(settings_env):
    key = Fernet.generate_key().decode()
    config = settings_module.load({**settings_env, "ERRAND_SECRET_KEY": key})

    token = secretbox.encrypt(VALUE, config)

    assert Fernet(key.encode()).decrypt(token).decode() == VALUE
    assert not (config.data_dir / secretbox.KEY_FILE).exists()


def test_a_value_stored_under_another_key_is_reported_unreadable(settings):
    foreign = Fernet(Fernet.generate_key()).encrypt(VALUE.encode())

    with pytest.raises(ErrandError, match="API_TOKEN.*another secret key"):
        secretbox.decrypt("API_TOKEN", foreign, settings)


def test_a_value_with_a_nul_character_is_refused(set_secret):
    response = set_secret("API_TOKEN", "abc\x00def")

    assert response.status_code == 400
    assert "NUL" in response.json["error"]["fields"]["value"]
