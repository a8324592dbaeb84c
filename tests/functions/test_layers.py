"""Layers: shared code uploaded once, importable by the functions naming it."""

from __future__ import annotations

from models import Layer

USES_COMMON = 'handler = "main.handler"\nlayers = ["common"]\n'
IMPORTS_COMMON = (
    "from common import shout\n\ndef handler(event, context):\n    return shout('hi')\n"
)


def test_a_layer_upload_answers_201_then_200_for_the_same_content(
    deploy_layer, examples
):
    first = deploy_layer("common", examples / "_layers" / "common")
    again = deploy_layer("common", examples / "_layers" / "common")

    assert first.status_code == 201
    assert first.json["version"] == 1
    assert again.status_code == 200
    assert again.json["created"] is False
    assert Layer.get_by_id("common").version == 1


def test_new_layer_content_is_its_next_version(deploy_layer, make_zip):
    deploy_layer("common", make_zip({"common.py": "A = 1\n"}))

    response = deploy_layer("common", make_zip({"common.py": "A = 2\n"}))

    assert response.status_code == 201
    assert response.json["version"] == 2


def test_a_function_imports_from_the_layers_it_names(
    deploy, deploy_layer, invoke, examples, make_zip
):
    deploy_layer("common", examples / "_layers" / "common")
    deploy(
        "shouter", make_zip({"function.toml": USES_COMMON, "main.py": IMPORTS_COMMON})
    )

    response = invoke("shouter")

    assert response.status_code == 200
    assert response.json["result"] == "HI!"


def test_the_functions_own_modules_come_before_its_layers(
    deploy, deploy_layer, invoke, make_zip
):
    deploy_layer("common", make_zip({"common.py": "def shout(text):\n    return 0\n"}))
    own = "def shout(text):\n    return 'own'\n"
    files = {"function.toml": USES_COMMON, "main.py": IMPORTS_COMMON, "common.py": own}
    deploy("shouter", make_zip(files))

    assert invoke("shouter").json["result"] == "own"


def test_the_greeter_example_uses_its_layer_and_its_secret(
    deploy, deploy_layer, invoke, set_secret, examples
):
    set_secret("GREETER_TOKEN", "abcdef")
    deploy_layer("common", examples / "_layers" / "common")
    deploy("greeter", examples / "greeter")

    response = invoke("greeter", {"name": "Ada"})

    assert response.json["result"] == {"greeting": "HELLO, ADA!", "tokenLength": 6}


def test_listing_layers_shows_them_without_their_archives(
    client, auth, deploy_layer, make_zip
):
    deploy_layer("beta", make_zip({"b.py": ""}))
    deploy_layer("alpha", make_zip({"a.py": ""}))

    response = client.get("/layers", headers=auth)

    listed = response.json["layers"]
    assert [layer["name"] for layer in listed] == ["alpha", "beta"]
    assert set(listed[0]) == {"name", "version", "sha256", "createdAt", "updatedAt"}


def test_a_bad_layer_archive_is_refused_and_not_stored(
    deploy_layer, make_zip, database
):
    escaping = deploy_layer("common", make_zip({"../common.py": ""}))
    empty = deploy_layer("common", make_zip({}))
    not_zip = deploy_layer("common", b"nope")

    for response in (escaping, empty, not_zip):
        assert response.status_code == 400
        assert response.json["error"]["code"] == "invalid_package"
    assert Layer.select().count() == 0


def test_a_layer_deleted_after_deploy_fails_the_call_clearly(
    client, auth, deploy, deploy_layer, invoke, examples, make_zip
):
    deploy_layer("common", examples / "_layers" / "common")
    deploy(
        "shouter", make_zip({"function.toml": USES_COMMON, "main.py": IMPORTS_COMMON})
    )

    assert client.delete("/layers/common", headers=auth).status_code == 204
    response = invoke("shouter")

    assert response.status_code == 409
    assert "common" in response.json["error"]["message"]
    assert client.delete("/layers/common", headers=auth).status_code == 404
