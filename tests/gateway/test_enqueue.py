"""``POST /functions/<id>/invoke-async``: new jobs, deduplication, bad bodies."""

from __future__ import annotations

import io
import json
import threading

import pytest

import models
import settings as settings_module
from app import create_app

SMALL_LIMIT = 1024


@pytest.fixture(autouse=True)
def echo(make_function):
    return make_function("echo")


def invoke_async(client, auth, body, function_id="echo"):
    return client.post(
        f"/functions/{function_id}/invoke-async", json=body, headers=auth
    )


def body_of_size(size: int) -> bytes:
    """A valid enqueue body exactly ``size`` bytes long."""
    empty = json.dumps({"event": ""}).encode()
    return json.dumps({"event": "x" * (size - len(empty))}).encode()


def test_a_new_job_answers_202_with_its_location(client, auth):
    response = invoke_async(client, auth, {"event": {"n": 1}})

    body = response.get_json()
    assert response.status_code == 202
    assert body == {"jobId": body["jobId"], "status": "PENDING", "deduplicated": False}
    assert response.headers["Location"] == f"/jobs/{body['jobId']}"
    assert models.Job.get_by_id(body["jobId"]).function_id == "echo"


def test_the_location_of_a_new_job_can_be_polled(client, auth):
    location = invoke_async(client, auth, {}).headers["Location"]

    response = client.get(location, headers=auth)

    assert response.status_code == 200
    assert response.get_json()["status"] == "PENDING"


def test_the_same_idempotency_key_returns_the_first_job(client, auth):
    first = invoke_async(client, auth, {"idempotencyKey": "order-1"}).get_json()

    response = invoke_async(client, auth, {"idempotencyKey": "order-1"})

    assert response.status_code == 200
    assert response.get_json() == {
        "jobId": first["jobId"],
        "status": "PENDING",
        "deduplicated": True,
    }
    assert "Location" not in response.headers
    assert models.Job.select().count() == 1


def test_a_deduplicated_answer_shows_the_current_status(client, auth):
    first = invoke_async(client, auth, {"idempotencyKey": "order-1"}).get_json()
    client.post(f"/jobs/{first['jobId']}/cancel", headers=auth)

    response = invoke_async(client, auth, {"idempotencyKey": "order-1"})

    assert response.get_json()["status"] == "CANCELLED"
    assert response.get_json()["deduplicated"] is True


def test_the_same_idempotency_key_on_another_function_makes_a_new_job(
    client, auth, make_function
):
    make_function("other")
    first = invoke_async(client, auth, {"idempotencyKey": "order-1"}).get_json()

    response = invoke_async(client, auth, {"idempotencyKey": "order-1"}, "other")

    assert response.status_code == 202
    assert response.get_json()["jobId"] != first["jobId"]
    assert response.get_json()["deduplicated"] is False


def test_jobs_without_an_idempotency_key_are_never_deduplicated(client, auth):
    invoke_async(client, auth, {})

    response = invoke_async(client, auth, {})

    assert response.status_code == 202
    assert models.Job.select().count() == 2


def race_to_enqueue(app, auth, key: str) -> list[dict]:
    """Two clients post the same idempotency key at the same instant."""
    barrier, answers = threading.Barrier(2), []

    def post():
        client = app.test_client()
        barrier.wait()
        answers.append(invoke_async(client, auth, {"idempotencyKey": key}))
        models.db.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


@pytest.mark.parametrize("round_", range(5))
def test_racing_requests_with_one_idempotency_key_make_one_job(app, auth, round_):
    key = f"race-{round_}"

    answers = race_to_enqueue(app, auth, key)

    rows = models.Job.select().where(models.Job.idempotency_key == key)
    assert rows.count() == 1
    assert sorted(a.status_code for a in answers) == [200, 202]
    assert {a.get_json()["jobId"] for a in answers} == {rows.get().id}


def test_an_unknown_function_answers_404(client, auth):
    response = invoke_async(client, auth, {}, "missing")

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert models.Job.select().count() == 0


@pytest.fixture
def small_client(settings_env):
    """A client of an app whose enqueue bodies are limited to 1 KiB."""
    limited = {**settings_env, "ERRAND_MAX_EVENT_BYTES": str(SMALL_LIMIT)}
    return create_app(settings_module.load(limited)).test_client()


def post_raw(client, auth, data: bytes, **options):
    return client.post(
        "/functions/echo/invoke-async",
        data=data,
        headers={**auth, "Content-Type": "application/json"},
        **options,
    )


def test_a_body_at_the_size_limit_is_accepted(small_client, auth):
    response = post_raw(small_client, auth, body_of_size(SMALL_LIMIT))

    assert response.status_code == 202


def test_a_body_over_the_size_limit_answers_413(small_client, auth):
    response = post_raw(small_client, auth, body_of_size(SMALL_LIMIT + 1))

    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert models.Job.select().count() == 0


@pytest.mark.parametrize("size", [SMALL_LIMIT + 1, 10 * SMALL_LIMIT])
def test_a_chunked_body_over_the_size_limit_answers_413(small_client, auth, size):
    response = small_client.post(
        "/functions/echo/invoke-async",
        input_stream=io.BytesIO(body_of_size(size)),
        headers={
            **auth,
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},
    )

    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_a_chunked_body_at_the_size_limit_is_accepted(small_client, auth):
    response = small_client.post(
        "/functions/echo/invoke-async",
        input_stream=io.BytesIO(body_of_size(SMALL_LIMIT)),
        headers={
            **auth,
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},
    )

    assert response.status_code == 202


@pytest.mark.parametrize(
    "data",
    [
        b"{",
        b"not json",
        b"{'single': 'quotes'}",
        b"NaN",
        b'{"n": Infinity}',
        b"\xff",
        b'{"event": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
)
def test_a_body_that_is_not_json_answers_400(client, auth, data):
    response = post_raw(client, auth, data)

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"


@pytest.mark.parametrize("data", [b"[]", b"[{}]", b'"event"', b"1", b"null", b"true"])
def test_a_json_body_that_is_not_an_object_answers_400(client, auth, data):
    response = post_raw(client, auth, data)

    assert response.status_code == 400
    assert response.get_json()["error"]["message"] == (
        "the request body must be a JSON object"
    )


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"],
)
def test_a_body_of_another_content_type_answers_415(client, auth, content_type):
    response = client.post(
        "/functions/echo/invoke-async",
        data=b"{}",
        headers={**auth, "Content-Type": content_type},
    )

    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"


def test_a_json_content_type_with_a_charset_is_accepted(client, auth):
    response = client.post(
        "/functions/echo/invoke-async",
        data=b"{}",
        headers={**auth, "Content-Type": "application/json; charset=utf-8"},
    )

    assert response.status_code == 202
