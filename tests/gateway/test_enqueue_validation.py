"""The enqueue body: each field at and past its bounds, and of wrong types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

import models

WEEK_S = 7 * 24 * 3600


@pytest.fixture(autouse=True)
def echo(make_function):
    return make_function("echo")


@pytest.fixture
def enqueue(client, auth):
    def post(body):
        return client.post("/functions/echo/invoke-async", json=body, headers=auth)

    return post


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def stored_job(response) -> models.Job:
    return models.Job.get_by_id(response.get_json()["jobId"])


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"event": {"nested": [1, 2, {"deep": None}]}},
        {"event": "a string"},
        {"event": [1, 2, 3]},
        {"event": 7},
        {"maxAttempts": 1},
        {"maxAttempts": 100},
        {"idempotencyKey": "k"},
        {"idempotencyKey": "k" * 255},
        {"concurrencyKey": "c"},
        {"concurrencyKey": "c" * 255},
        {"concurrencyKey": "c", "concurrencyLimit": 1},
        {"concurrencyKey": "c", "concurrencyLimit": 1000},
        {"priority": -1000},
        {"priority": 1000},
        {"delaySeconds": 0},
        {"delaySeconds": 0.5},
        {"delaySeconds": WEEK_S},
        {"runAt": "2020-01-01T00:00:00Z"},
        {"runAt": "2020-01-01T00:00:00+05:30"},
    ],
)
def test_a_body_within_bounds_is_accepted(enqueue, body):
    response = enqueue(body)

    assert response.status_code == 202, response.get_json()


BAD_FIELDS = [
    # maxAttempts: an integer 1..100
    ({"maxAttempts": 0}, "maxAttempts"),
    ({"maxAttempts": 101}, "maxAttempts"),
    ({"maxAttempts": "3"}, "maxAttempts"),
    ({"maxAttempts": 2.0}, "maxAttempts"),
    ({"maxAttempts": 2.5}, "maxAttempts"),
    ({"maxAttempts": True}, "maxAttempts"),
    ({"maxAttempts": None}, "maxAttempts"),
    # idempotencyKey and concurrencyKey: strings of 1..255 characters
    ({"idempotencyKey": ""}, "idempotencyKey"),
    ({"idempotencyKey": "k" * 256}, "idempotencyKey"),
    ({"idempotencyKey": 5}, "idempotencyKey"),
    ({"idempotencyKey": None}, "idempotencyKey"),
    ({"concurrencyKey": ""}, "concurrencyKey"),
    ({"concurrencyKey": "c" * 256}, "concurrencyKey"),
    ({"concurrencyKey": ["c"]}, "concurrencyKey"),
    ({"concurrencyKey": None}, "concurrencyKey"),
    # concurrencyLimit: an integer 1..1000, only with a concurrencyKey
    ({"concurrencyKey": "c", "concurrencyLimit": 0}, "concurrencyLimit"),
    ({"concurrencyKey": "c", "concurrencyLimit": 1001}, "concurrencyLimit"),
    ({"concurrencyKey": "c", "concurrencyLimit": "2"}, "concurrencyLimit"),
    ({"concurrencyKey": "c", "concurrencyLimit": 2.0}, "concurrencyLimit"),
    ({"concurrencyKey": "c", "concurrencyLimit": False}, "concurrencyLimit"),
    ({"concurrencyKey": "c", "concurrencyLimit": None}, "concurrencyLimit"),
    ({"concurrencyLimit": 2}, "concurrencyLimit"),
    # priority: an integer -1000..1000
    ({"priority": -1001}, "priority"),
    ({"priority": 1001}, "priority"),
    ({"priority": "1"}, "priority"),
    ({"priority": 0.5}, "priority"),
    ({"priority": True}, "priority"),
    ({"priority": None}, "priority"),
    # delaySeconds: a number 0..604800
    ({"delaySeconds": -0.001}, "delaySeconds"),
    ({"delaySeconds": WEEK_S + 0.001}, "delaySeconds"),
    ({"delaySeconds": "10"}, "delaySeconds"),
    ({"delaySeconds": True}, "delaySeconds"),
    ({"delaySeconds": None}, "delaySeconds"),
    # runAt: an ISO-8601 time with a zone, at most 7 days ahead
    ({"runAt": "2030-01-01T00:00:00"}, "runAt"),
    ({"runAt": "tomorrow"}, "runAt"),
    ({"runAt": 1767225600}, "runAt"),
    ({"runAt": None}, "runAt"),
    ({"runAt": iso_in(60), "delaySeconds": 60}, "runAt"),
    # anything else
    ({"bogus": 1}, "bogus"),
    ({"max_attempts": 2}, "max_attempts"),
]


@pytest.mark.parametrize(("body", "field"), BAD_FIELDS)
def test_a_bad_field_is_named_in_the_envelope(enqueue, body, field):
    response = enqueue(body)

    error = response.get_json()["error"]
    assert response.status_code == 400
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == [field]
    assert error["fields"][field]


def test_run_at_up_to_seven_days_ahead_is_accepted(enqueue):
    response = enqueue({"runAt": iso_in(WEEK_S - 60)})

    assert response.status_code == 202


def test_run_at_more_than_seven_days_ahead_is_refused(enqueue):
    response = enqueue({"runAt": iso_in(WEEK_S + 60)})

    assert response.status_code == 400
    assert list(response.get_json()["error"]["fields"]) == ["runAt"]


def test_every_bad_field_of_a_body_is_named_at_once(enqueue):
    response = enqueue({"maxAttempts": 0, "priority": "high", "extra": True})

    fields = response.get_json()["error"]["fields"]
    assert set(fields) == {"maxAttempts", "priority", "extra"}


def test_an_invalid_body_makes_no_job(enqueue):
    enqueue({"maxAttempts": 0})

    assert models.Job.select().count() == 0


def test_defaults_apply_to_an_empty_body(enqueue):
    before = models.utcnow()

    job = stored_job(enqueue({}))

    assert job.event == "{}"
    assert job.max_attempts == 1
    assert job.priority == 0
    assert job.idempotency_key is None
    assert job.concurrency_key is None
    assert job.concurrency_limit is None
    assert before <= job.run_at <= models.utcnow()


def test_a_request_without_a_body_counts_as_an_empty_one(client, auth):
    response = client.post("/functions/echo/invoke-async", headers=auth)

    assert response.status_code == 202
    assert stored_job(response).event == "{}"


def test_the_event_is_stored_as_given(enqueue):
    event = {"to": "ada@example.com", "tags": ["a", "b"], "n": 1.5}

    job = stored_job(enqueue({"event": event}))

    assert job.event == '{"to": "ada@example.com", "tags": ["a", "b"], "n": 1.5}'


def test_a_null_event_is_stored_as_null(enqueue):
    job = stored_job(enqueue({"event": None}))

    assert job.event == "null"


def test_a_concurrency_key_alone_has_a_limit_of_one(enqueue):
    job = stored_job(enqueue({"concurrencyKey": "mailbox"}))

    assert job.concurrency_key == "mailbox"
    assert job.concurrency_limit == 1


def test_delay_seconds_counts_from_the_job_creation(enqueue):
    job = stored_job(enqueue({"delaySeconds": 3600.5}))

    assert job.run_at - job.created_at == timedelta(seconds=3600.5)


def test_run_at_in_another_zone_is_stored_as_utc(enqueue):
    tomorrow = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    local = tomorrow.astimezone(timezone(timedelta(hours=2)))

    job = stored_job(enqueue({"runAt": local.isoformat()}))

    assert local.isoformat().endswith("+02:00")
    assert job.run_at == tomorrow.replace(tzinfo=None)


def test_a_whole_second_run_at_is_answered_with_microseconds(client, auth, enqueue):
    tomorrow = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    job_id = enqueue({"runAt": tomorrow.isoformat()}).get_json()["jobId"]

    body = client.get(f"/jobs/{job_id}", headers=auth).get_json()

    assert body["runAt"] == tomorrow.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def test_run_at_in_the_past_means_now(enqueue):
    before = models.utcnow()

    job = stored_job(enqueue({"runAt": "2020-01-01T00:00:00Z"}))

    assert before <= job.run_at <= models.utcnow()
