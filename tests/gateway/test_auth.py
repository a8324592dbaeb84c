"""Every route but the health check needs a bearer key."""

from __future__ import annotations

import re

import pytest

PUBLIC_ROUTES = {"/healthz"}

# A URL rule's variable part: ``<name>`` or ``<converter(args):name>``.
VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
NUMERIC_CONVERTERS = {"int", "float"}


def concrete_path(rule: str) -> str:
    """The rule with a dummy value in each variable part."""

    def dummy(match: re.Match) -> str:
        return "1" if match["converter"] in NUMERIC_CONVERTERS else "dummy"

    return VARIABLE.sub(dummy, rule)


def guarded_requests(app) -> list[tuple[str, str]]:
    """``(method, path)`` for every method of every route that needs a key."""
    return sorted(
        (method, concrete_path(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule not in PUBLIC_ROUTES
        for method in rule.methods
    )


def test_every_route_but_the_health_check_answers_401_without_a_key(app, client):
    requests = guarded_requests(app)

    answers = {(m, p): client.open(p, method=m) for m, p in requests}

    assert ("POST", "/jobs/dummy/cancel") in answers
    for (method, path), response in answers.items():
        assert response.status_code == 401, (method, path)
        assert response.headers["WWW-Authenticate"] == "Bearer", (method, path)
        if method != "HEAD":
            assert response.get_json()["error"]["code"] == "unauthorized"


def test_health_check_answers_without_a_key(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong-key",
        "Bearer ",
        "Basic dGVzdC1rZXk6",
        "test-key",
        "Bearer test-key-but-longer",
    ],
)
def test_a_wrong_key_answers_401_with_a_bearer_challenge(client, header):
    response = client.get("/jobs", headers={"Authorization": header})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_the_bootstrap_key_is_accepted(client, auth):
    response = client.get("/jobs", headers=auth)

    assert response.status_code == 200


def test_the_bearer_scheme_is_not_case_sensitive(client):
    response = client.get("/jobs", headers={"Authorization": "bearer test-key"})

    assert response.status_code == 200
