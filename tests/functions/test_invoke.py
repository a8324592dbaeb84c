"""Synchronous calls: results, failures, timeouts, logs and the environment."""

from __future__ import annotations

from models import Invocation


def test_a_call_answers_200_with_the_result(deploy, invoke, examples):
    deploy("hello", examples / "hello")

    response = invoke("hello", {"name": "Ada"})

    assert response.status_code == 200
    body = response.json
    assert body["result"] == {"message": "hello, Ada"}
    assert body["durationMs"] > 0
    assert Invocation.get_by_id(body["invocationId"]).status == "SUCCEEDED"


def test_a_call_is_recorded_as_an_http_invocation(
    client, auth, deploy, invoke, examples
):
    deploy("hello", examples / "hello")
    invocation_id = invoke("hello").json["invocationId"]

    response = client.get(f"/invocations/{invocation_id}", headers=auth)

    assert response.status_code == 200
    body = response.json
    assert body["functionId"] == "hello"
    assert body["version"] == 1
    assert body["trigger"] == "http"
    assert body["jobId"] is None
    assert body["attempt"] == 1
    assert body["exitCode"] == 0
    assert body["finishedAt"].endswith("Z")


def test_the_event_defaults_to_an_empty_object(deploy, invoke, examples):
    deploy("hello", examples / "hello")

    response = invoke("hello")

    assert response.json["result"] == {"message": "hello, world"}


def test_an_async_handler_is_awaited(deploy, invoke, examples):
    deploy("slow", examples / "slow")

    response = invoke("slow", {"seconds": 0.05})

    assert response.status_code == 200
    assert response.json["result"] == {"slept": 0.05}


def test_a_failing_handler_answers_502_with_its_error_type(
    client, auth, deploy, invoke, samples
):
    deploy("failing", samples / "failing")

    response = invoke("failing", {})

    assert response.status_code == 502
    error = response.json["error"]
    assert error["code"] == "function_error"
    assert error["errorType"] == "KeyError"
    assert error["message"] == "KeyError: 'x'"
    invocation = client.get(f"/invocations/{error['invocationId']}", headers=auth)
    assert invocation.json["status"] == "FAILED"
    assert "Traceback" in invocation.json["traceback"]
    assert "about to look up 'x'" in invocation.json["logs"]


def test_a_handler_past_its_timeout_answers_502_function_timeout(
    deploy, invoke, samples
):
    deploy("sleeper", samples / "sleeper")

    response = invoke("sleeper")

    assert response.status_code == 502
    error = response.json["error"]
    assert error["code"] == "function_timeout"
    assert error["errorType"] == "TimeoutError"
    assert Invocation.get_by_id(error["invocationId"]).status == "TIMED_OUT"


def test_what_a_handler_prints_goes_to_the_logs_not_the_result(deploy, invoke, samples):
    deploy("printer", samples / "printer")

    response = invoke("printer")

    assert response.json["result"] == {"ok": True}
    logs = Invocation.get_by_id(response.json["invocationId"]).logs
    assert "to stdout" in logs
    assert "to stderr" in logs
    assert "through the context's logger" in logs


def test_the_gateway_environment_is_hidden_from_handlers(
    deploy, invoke, samples, monkeypatch
):
    monkeypatch.setenv("ERRAND_API_KEY", "gateway-key")
    monkeypatch.setenv("ERRAND_DATABASE_URL", "postgresql://user:pw@db/errand")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "gateway-cloud-key")
    deploy("envdump", samples / "envdump")

    env = invoke("envdump").json["result"]

    assert env["COLOUR"] == "blue"
    assert not [name for name in env if name.startswith("ERRAND_")]
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "gateway-key" not in str(env)


def test_calling_an_unknown_function_is_404(invoke):
    response = invoke("nope")

    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_unknown_fields_in_the_body_are_refused(client, auth, deploy, examples):
    deploy("hello", examples / "hello")

    response = client.post(
        "/functions/hello/invoke", json={"event": {}, "extra": 1}, headers=auth
    )

    assert response.status_code == 400
    assert "extra" in response.json["error"]["fields"]


def test_reading_an_unknown_invocation_is_404(client, auth, database):
    response = client.get("/invocations/nope", headers=auth)

    assert response.status_code == 404


def test_the_receipt_example_computes_an_order(deploy, invoke, examples):
    deploy("receipt", examples / "receipt")

    receipt = invoke("receipt", {"orderId": "ord_123"}).json["result"]

    assert receipt["currency"] == "USD"
    assert len(receipt["lines"]) == 4
    assert receipt["subtotal"] == "103.30"
    assert receipt["discount"] == "10.33"
    assert receipt["tax"] == "6.74"
    assert receipt["total"] == "99.71"


def test_the_receipt_example_names_an_unknown_order(deploy, invoke, examples):
    deploy("receipt", examples / "receipt")

    response = invoke("receipt", {"orderId": "ord_999"})

    assert response.status_code == 502
    assert response.json["error"]["message"] == "LookupError: no order 'ord_999'"


def test_the_flaky_example_fails_its_first_attempt(deploy, invoke, examples):
    deploy("flaky", examples / "flaky")

    response = invoke("flaky", {"succeedOnAttempt": 1})
    failed = invoke("flaky", {"succeedOnAttempt": 3})

    assert response.json["result"] == {"attempt": 1}
    assert failed.json["error"]["errorType"] == "RuntimeError"
