"""One JSON error envelope for every failure, never HTML or a traceback."""

from __future__ import annotations

import logging

import pytest
from flask import abort

import models


def assert_envelope(response, status: int, code: str) -> dict:
    """The response is the JSON envelope; returns its ``error`` object."""
    body = response.get_json()
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "<html" not in response.get_data(as_text=True).lower()
    return body["error"]


@pytest.fixture
def failing_app(app):
    """The app with routes that fail the ways a bug would."""

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail from deep inside")

    @app.get("/aborted")
    def aborted():
        abort(500)

    return app


def test_an_unknown_route_answers_404_in_the_envelope(client, auth):
    response = client.get("/no/such/route", headers=auth)

    error = assert_envelope(response, 404, "not_found")
    assert set(error) == {"code", "message"}
    assert "/no/such/route" in error["message"]


def test_an_unknown_route_without_a_key_answers_401(client):
    response = client.get("/no/such/route")

    assert_envelope(response, 401, "unauthorized")


def test_a_wrong_method_answers_405_with_the_allowed_ones(client, auth):
    response = client.delete("/jobs", headers=auth)

    assert_envelope(response, 405, "method_not_allowed")
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert allowed == {"GET", "HEAD", "OPTIONS"}


def test_a_get_on_a_post_route_answers_405(client, auth):
    response = client.get("/jobs/some-job/cancel", headers=auth)

    assert_envelope(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_an_unexpected_error_answers_500_without_details(failing_app, auth):
    client = failing_app.test_client()

    response = client.get("/boom", headers=auth)

    error = assert_envelope(response, 500, "internal_error")
    text = response.get_data(as_text=True)
    assert "Traceback" not in text
    assert "secret detail" not in text
    assert "RuntimeError" not in text
    assert set(error) == {"code", "message"}


def test_an_unexpected_error_is_logged_with_its_traceback(failing_app, auth, caplog):
    client = failing_app.test_client()

    with caplog.at_level(logging.ERROR, logger="app"):
        client.get("/boom", headers=auth)

    (record,) = [r for r in caplog.records if r.name == "app"]
    assert record.exc_info is not None
    assert "GET /boom" in record.getMessage()


def test_an_aborted_request_answers_in_the_envelope(failing_app, auth):
    client = failing_app.test_client()

    response = client.get("/aborted", headers=auth)

    assert_envelope(response, 500, "internal_error")


def test_a_validation_error_names_its_fields(client, auth, make_function):
    make_function("echo")

    response = client.post(
        "/functions/echo/invoke-async", json={"priority": "high"}, headers=auth
    )

    error = assert_envelope(response, 400, "validation_error")
    assert set(error) == {"code", "message", "fields"}
    assert set(error["fields"]) == {"priority"}


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/functions"),
        ("GET", "/secrets"),
        ("POST", "/functions/echo/invoke-async"),
        ("GET", "/jobs/some-id/invocations"),
        ("POST", "/jobs/some-id/cancel"),
    ],
)
def test_a_query_string_on_a_route_that_reads_none_is_refused(
    client, auth, method, path
):
    response = client.open(f"{path}?foo=1", method=method, headers=auth)

    error = response.get_json()["error"]
    assert response.status_code == 400
    assert error["fields"] == {"foo": "Unknown parameter."}


@pytest.mark.parametrize("action", ["requeue", "cancel"])
def test_a_body_on_a_route_that_takes_none_is_refused(client, auth, make_job, action):
    job = make_job()

    response = client.post(
        f"/jobs/{job.id}/{action}", json={"maxAttempts": 5}, headers=auth
    )

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"
    assert models.Job.get_by_id(job.id).status == "PENDING"
