"""``GET /jobs``: newest first, filtered, one page at a time."""

from __future__ import annotations

import pytest

import jobs


def list_jobs(client, auth, **query):
    return client.get("/jobs", query_string=query, headers=auth)


def ids(response) -> list[str]:
    return [job["jobId"] for job in response.get_json()["jobs"]]


def walk(client, auth, **query) -> list[str]:
    """Every job id, following ``nextCursor`` to the last page."""
    seen, cursor = [], None
    while True:
        page_query = dict(query, cursor=cursor) if cursor else query
        body = list_jobs(client, auth, **page_query).get_json()
        seen += [job["jobId"] for job in body["jobs"]]
        cursor = body["nextCursor"]
        if cursor is None:
            return seen


def test_jobs_are_listed_newest_first(client, auth, make_job):
    made = [make_job().id for _ in range(4)]

    response = list_jobs(client, auth)

    assert response.status_code == 200
    assert ids(response) == made[::-1]
    assert response.get_json()["nextCursor"] is None


def test_an_empty_queue_lists_no_jobs(client, auth):
    response = list_jobs(client, auth)

    assert response.get_json() == {"jobs": [], "nextCursor": None}


def test_listed_jobs_carry_the_same_fields_as_a_poll(client, auth, make_job):
    job = make_job()

    listed = list_jobs(client, auth).get_json()["jobs"][0]

    assert listed == client.get(f"/jobs/{job.id}", headers=auth).get_json()


def test_walking_every_page_shows_each_job_once(client, auth, make_job):
    made = {make_job().id for _ in range(23)}

    seen = walk(client, auth, limit=5)

    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == made


def test_jobs_enqueued_during_a_walk_do_not_shift_its_pages(client, auth, make_job):
    made = [make_job().id for _ in range(6)]
    first = list_jobs(client, auth, limit=3).get_json()
    newer = [make_job().id for _ in range(3)]

    second = list_jobs(client, auth, limit=3, cursor=first["nextCursor"])

    seen = ids(second) + [job["jobId"] for job in first["jobs"]]
    assert sorted(seen) == sorted(made)
    assert not set(newer) & set(seen)


def test_a_full_last_page_has_no_next_cursor(client, auth, make_job):
    for _ in range(4):
        make_job()

    body = list_jobs(client, auth, limit=4).get_json()

    assert len(body["jobs"]) == 4
    assert body["nextCursor"] is None


def test_the_next_cursor_starts_after_the_page(client, auth, make_job):
    made = [make_job().id for _ in range(3)]

    first = list_jobs(client, auth, limit=2).get_json()
    second = list_jobs(client, auth, limit=2, cursor=first["nextCursor"])

    assert first["nextCursor"] == made[1]
    assert ids(second) == [made[0]]


def test_status_filters_the_list(client, auth, make_job):
    cancelled = make_job()
    make_job()
    jobs.cancel(cancelled.id)

    response = list_jobs(client, auth, status="CANCELLED")

    assert ids(response) == [cancelled.id]


def test_function_id_filters_the_list(client, auth, make_job):
    mine = make_job("mailer")
    make_job("echo")

    response = list_jobs(client, auth, functionId="mailer")

    assert ids(response) == [mine.id]


def test_filters_hold_across_pages(client, auth, make_job):
    wanted = set()
    for n in range(12):
        job = make_job("mailer" if n % 2 else "echo")
        if n % 3 == 0:
            jobs.cancel(job.id)
            if n % 2:
                wanted.add(job.id)

    seen = walk(client, auth, status="CANCELLED", functionId="mailer", limit=1)

    assert sorted(seen) == sorted(wanted)


@pytest.mark.parametrize("limit", ["1", "200"])
def test_a_limit_within_range_is_accepted(client, auth, limit):
    response = list_jobs(client, auth, limit=limit)

    assert response.status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "-5"},
        {"limit": "ten"},
        {"limit": "2.5"},
        {"status": "dead"},
        {"status": "FINISHED"},
        {"status": ""},
        {"cursor": ""},
        {"cursor": "c" * 65},
        {"cursor": "garbage"},
        {"cursor": "0"},
        {"functionId": ""},
    ],
)
def test_a_bad_query_answers_400_naming_the_parameter(client, auth, query):
    response = list_jobs(client, auth, **query)

    error = response.get_json()["error"]
    assert response.status_code == 400
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == list(query)


def test_an_unknown_query_parameter_answers_400(client, auth):
    response = list_jobs(client, auth, page="2")

    assert response.status_code == 400
    assert list(response.get_json()["error"]["fields"]) == ["page"]


def test_a_repeated_query_parameter_answers_400(client, auth):
    response = client.get("/jobs?limit=2&limit=3", headers=auth)

    error = response.get_json()["error"]
    assert response.status_code == 400
    assert list(error["fields"]) == ["limit"]
