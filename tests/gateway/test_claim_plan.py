"""The claim reads ready jobs in index order, never by sorting the queue."""

from __future__ import annotations

import pytest

import jobs
import models
from models import Job, JobStatus, utcnow

QUEUE_DEPTH = 300


@pytest.fixture
def deep_queue(make_function):
    """Ready jobs of mixed priority, some under concurrency keys, some running."""
    make_function("echo")
    now = utcnow()
    rows = [
        {
            "function_id": "echo",
            "priority": n % 7,
            "concurrency_key": f"key-{n % 5}" if n % 3 == 0 else None,
            "concurrency_limit": 2 if n % 3 == 0 else None,
            "status": JobStatus.RUNNING if n % 10 == 0 else JobStatus.PENDING,
            "run_at": now,
        }
        for n in range(QUEUE_DEPTH)
    ]
    for row in rows:
        row["id"] = models.new_id()
    Job.insert_many(rows).execute()


def candidate_query(monkeypatch) -> tuple[str, tuple]:
    """The SQL and parameters of the claim's candidate query, as it runs."""
    database, executed = models.db.obj, []
    original = database.execute_sql

    def record(sql, params=None, *args, **kwargs):
        executed.append((sql, params))
        return original(sql, params, *args, **kwargs)

    monkeypatch.setattr(database, "execute_sql", record)
    chosen = jobs._pick_ready(utcnow(), 4)
    monkeypatch.undo()

    assert chosen
    (query,) = [(s, p) for s, p in executed if "ORDER BY" in s]
    return query


def query_plan(sql: str, params) -> str:
    rows = models.db.execute_sql("EXPLAIN QUERY PLAN " + sql, params)
    return "\n".join(row[-1] for row in rows)


def test_the_claim_order_comes_from_its_index(deep_queue, monkeypatch):
    sql, params = candidate_query(monkeypatch)

    plan = query_plan(sql, params)

    assert "USING INDEX job_claim_order" in plan
    assert "USE TEMP B-TREE" not in plan


def test_the_claim_order_comes_from_its_index_after_analyze(deep_queue, monkeypatch):
    models.db.execute_sql("ANALYZE")
    sql, params = candidate_query(monkeypatch)

    plan = query_plan(sql, params)

    assert "USE TEMP B-TREE" not in plan
