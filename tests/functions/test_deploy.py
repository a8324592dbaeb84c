"""Deploying functions: versions, dedup, listing, reading and deleting."""

from __future__ import annotations

from models import Function, FunctionVersion


def test_a_first_deploy_answers_201_with_the_manifest_settings(deploy, examples):
    response = deploy("hello", examples / "hello")

    assert response.status_code == 201
    body = response.json
    assert body["functionId"] == "hello"
    assert body["version"] == 1
    assert len(body["sha256"]) == 64
    assert body["created"] is True
    assert body["handler"] == "main.handler"
    assert body["timeout"] == 10
    assert body["memory"] == 128
    assert body["secrets"] == [] and body["layers"] == []
    assert body["env"] == {"GREETING": "hello"}


def test_deploying_the_same_archive_again_keeps_one_version(deploy, hello_files):
    first = deploy("hello", hello_files())

    second = deploy("hello", hello_files())

    assert second.status_code == 200
    assert second.json["version"] == 1
    assert second.json["created"] is False
    assert second.json["sha256"] == first.json["sha256"]
    assert FunctionVersion.select().count() == 1


def test_an_unchanged_redeploy_leaves_the_update_time(
    client, auth, deploy, hello_files
):
    deploy("hello", hello_files())
    before = client.get("/functions/hello", headers=auth).json["updatedAt"]

    deploy("hello", hello_files())

    assert client.get("/functions/hello", headers=auth).json["updatedAt"] == before


def test_changed_code_makes_version_2(deploy, hello_files):
    deploy("hello", hello_files())

    response = deploy("hello", hello_files(**{"extra.txt": "more"}))

    assert response.status_code == 201
    assert response.json["version"] == 2
    assert Function.get_by_id("hello").latest_version == 2


def test_redeploying_an_older_archive_makes_that_version_current_again(
    deploy, hello_files
):
    deploy("hello", hello_files())
    deploy("hello", hello_files(**{"extra.txt": "more"}))

    response = deploy("hello", hello_files())

    assert response.status_code == 200
    assert response.json["version"] == 1
    assert Function.get_by_id("hello").latest_version == 1
    assert FunctionVersion.select().count() == 2


def test_the_same_archive_under_two_ids_is_two_functions(deploy, hello_files):
    assert deploy("one", hello_files()).status_code == 201
    assert deploy("two", hello_files()).status_code == 201


def test_a_package_inside_a_single_top_folder_is_accepted(deploy, make_zip):
    archive = make_zip(
        {
            "hello/": "",
            "hello/function.toml": 'handler = "main.handler"\n',
            "hello/main.py": "def handler(event, context):\n    return 1\n",
        }
    )

    assert deploy("hello", archive).status_code == 201


def test_a_handler_in_a_dotted_module_or_a_package_is_accepted(deploy, make_zip):
    dotted = make_zip(
        {
            "function.toml": 'handler = "app.api.handle"\n',
            "app/__init__.py": "",
            "app/api.py": "def handle(event, context):\n    return 1\n",
        }
    )
    package = make_zip(
        {
            "function.toml": 'handler = "main.handler"\n',
            "main/__init__.py": "def handler(event, context):\n    return 1\n",
        }
    )

    assert deploy("dotted", dotted).status_code == 201
    assert deploy("package", package).status_code == 201


def test_the_url_names_the_function_whatever_the_manifest_says(deploy, hello_files):
    manifest = 'name = "other"\nhandler = "main.handler"\n'
    files = hello_files(**{"function.toml": manifest})

    response = deploy("chosen", files)

    assert response.status_code == 201
    assert response.json["functionId"] == "chosen"
    assert Function.get_or_none(Function.id == "other") is None


def test_an_invalid_function_id_is_refused(deploy, hello_files):
    response = deploy("Not_Valid!", hello_files())

    assert response.status_code == 400
    assert response.json["error"]["code"] == "validation_error"
    assert "function id" in response.json["error"]["fields"]


def test_an_archive_that_is_not_a_zip_by_content_type_is_415(deploy, hello_files):
    response = deploy("hello", hello_files(), content_type="application/json")

    assert response.status_code == 415
    assert response.json["error"]["code"] == "unsupported_media_type"


def test_an_archive_over_50_mib_is_413(deploy, nothing_stored):
    response = deploy("hello", b"\0" * (50 * 1024 * 1024 + 1))

    assert response.status_code == 413
    nothing_stored()


def test_listing_shows_each_function_with_its_current_version(
    client, auth, deploy, hello_files
):
    deploy("beta", hello_files())
    deploy("alpha", hello_files())
    deploy("alpha", hello_files(**{"extra.txt": "more"}))

    response = client.get("/functions", headers=auth)

    assert response.status_code == 200
    listed = response.json["functions"]
    assert [item["functionId"] for item in listed] == ["alpha", "beta"]
    assert [item["latestVersion"] for item in listed] == [2, 1]
    assert listed[0]["updatedAt"].endswith("Z")


def test_reading_a_function_shows_its_settings_and_every_version(
    client, auth, deploy, examples, hello_files
):
    first = deploy("hello", hello_files())
    second = deploy("hello", examples / "hello")

    response = client.get("/functions/hello", headers=auth)

    assert response.status_code == 200
    body = response.json
    assert body["functionId"] == "hello"
    assert body["latestVersion"] == 2
    assert body["env"] == {"GREETING": "hello"}
    assert [(v["version"], v["sha256"]) for v in body["versions"]] == [
        (1, first.json["sha256"]),
        (2, second.json["sha256"]),
    ]


def test_reading_an_unknown_function_is_404(client, auth):
    response = client.get("/functions/nope", headers=auth)

    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_deleting_a_function_removes_it_and_its_versions(
    client, auth, deploy, hello_files
):
    deploy("hello", hello_files())
    deploy("hello", hello_files(**{"extra.txt": "more"}))

    response = client.delete("/functions/hello", headers=auth)

    assert response.status_code == 204
    assert Function.select().count() == 0
    assert FunctionVersion.select().count() == 0
    assert client.delete("/functions/hello", headers=auth).status_code == 404
