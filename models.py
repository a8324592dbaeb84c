"""The tables: the one place that knows how Errand's state is stored.

The database is bound at start-up by :func:`connect`; until then every model
points at a proxy. Times are naive UTC ``datetime`` values throughout.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from pathlib import Path

import peewee as pw
from playhouse.db_url import connect as connect_url
from uuid6 import uuid7

db = pw.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": 30_000,
}


def utcnow() -> datetime:
    """The current time as naive UTC, the form every column stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso_utc(value: datetime) -> str:
    """A naive UTC ``datetime`` as ISO-8601, always with microseconds and Z."""
    return value.replace(tzinfo=UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def new_id() -> str:
    """A time-ordered unique id: later ids sort after earlier ones."""
    return str(uuid7())


class JobStatus(enum.StrEnum):
    """Where a job is in its life. The last three are terminal."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    DEAD = "DEAD"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED})


class InvocationStatus(enum.StrEnum):
    """How one attempt, or one synchronous call, ended."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    LOST = "LOST"
    CANCELLED = "CANCELLED"


class BaseModel(pw.Model):
    class Meta:
        database = db
        legacy_table_names = False


class ApiKey(BaseModel):
    """A named API key, kept only as the sha256 of the key itself."""

    name = pw.CharField(max_length=64, unique=True)
    key_hash = pw.CharField(max_length=64, unique=True)
    created_at = pw.DateTimeField(default=utcnow)


class Function(BaseModel):
    """A deployed function; its code lives in its versions."""

    id = pw.CharField(max_length=63, primary_key=True)
    latest_version = pw.IntegerField(default=0)
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)


class FunctionVersion(BaseModel):
    """One immutable upload of a function: its archive and its manifest."""

    function = pw.ForeignKeyField(Function, backref="versions", on_delete="CASCADE")
    version = pw.IntegerField()
    sha256 = pw.CharField(max_length=64)
    archive = pw.BlobField()
    manifest = pw.TextField()  # the parsed manifest, as JSON
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("function", "version"), True),
            (("function", "sha256"), True),
        )


class Layer(BaseModel):
    """Shared code that functions put on their import path by name."""

    name = pw.CharField(max_length=63, primary_key=True)
    version = pw.IntegerField(default=1)
    sha256 = pw.CharField(max_length=64)
    archive = pw.BlobField()
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)


class Secret(BaseModel):
    """A named secret, its value encrypted at rest."""

    name = pw.CharField(max_length=128, primary_key=True)
    ciphertext = pw.BlobField()
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)


class Job(BaseModel):
    """A durable request to run a function in the background.

    Only ``jobs.py`` changes a job's status.
    """

    id = pw.CharField(max_length=36, primary_key=True, default=new_id)
    function_id = pw.CharField(max_length=63)
    status = pw.CharField(max_length=16, default=JobStatus.PENDING.value)
    event = pw.TextField(default="{}")  # JSON
    result = pw.TextField(null=True)  # JSON
    attempts = pw.IntegerField(default=0)
    max_attempts = pw.IntegerField(default=1)
    lost_count = pw.IntegerField(default=0)
    priority = pw.IntegerField(default=0)
    idempotency_key = pw.CharField(max_length=255, null=True)
    concurrency_key = pw.CharField(max_length=255, null=True)
    concurrency_limit = pw.IntegerField(null=True)
    last_error = pw.TextField(null=True)
    created_at = pw.DateTimeField(default=utcnow)
    run_at = pw.DateTimeField(default=utcnow)
    started_at = pw.DateTimeField(null=True)
    finished_at = pw.DateTimeField(null=True)
    worker_id = pw.CharField(max_length=128, null=True)
    # Made anew by every claim: a worker's write must name the claim it holds.
    claim_token = pw.CharField(max_length=36, null=True)
    lease_expires_at = pw.DateTimeField(null=True)
    cancel_requested = pw.BooleanField(default=False)

    class Meta:
        indexes = (
            # Idempotency: one job per key and function, enforced by the database.
            (("function_id", "idempotency_key"), True),
            (("status", "id"), False),
            (("function_id", "status"), False),
            (("concurrency_key", "status"), False),
            (("status", "lease_expires_at"), False),
            (("status", "finished_at"), False),
        )


# The claim reads ready jobs in exactly this order, so the index hands them
# over without sorting the ready set, however deep the queue is.
Job.add_index(
    Job.index(
        Job.status, Job.priority.desc(), Job.run_at, Job.id, name="job_claim_order"
    )
)


class Invocation(BaseModel):
    """The record of one attempt of a job, or of one synchronous call."""

    id = pw.CharField(max_length=36, primary_key=True, default=new_id)
    function_id = pw.CharField(max_length=63, index=True)
    version = pw.IntegerField(null=True)
    trigger = pw.CharField(max_length=8)  # "http" or "job"
    job = pw.ForeignKeyField(
        Job, null=True, backref="invocations", on_delete="CASCADE", index=True
    )
    attempt = pw.IntegerField(default=1)
    status = pw.CharField(max_length=16, default=InvocationStatus.RUNNING.value)
    worker_id = pw.CharField(max_length=128, null=True)
    started_at = pw.DateTimeField(default=utcnow)
    finished_at = pw.DateTimeField(null=True)
    duration_ms = pw.FloatField(null=True)
    error = pw.TextField(null=True)
    traceback = pw.TextField(null=True)
    logs = pw.TextField(null=True)
    exit_code = pw.IntegerField(null=True)
    peak_memory_kb = pw.IntegerField(null=True)

    # What an attempt's outcome says about how it ended, column by column.
    OUTCOME_COLUMNS = (
        "status",
        "finished_at",
        "duration_ms",
        "error",
        "traceback",
        "logs",
        "exit_code",
        "peak_memory_kb",
    )

    @classmethod
    def outcome_columns(cls, outcome) -> dict:
        """The columns an attempt's outcome fills, as keyword arguments."""
        return {name: getattr(outcome, name) for name in cls.OUTCOME_COLUMNS}


TABLES = [ApiKey, Function, FunctionVersion, Layer, Secret, Job, Invocation]


def connect(database_url: str) -> pw.Database:
    """Bind every model to the database at ``database_url`` and create tables."""
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        database = pw.SqliteDatabase(
            path, pragmas=SQLITE_PRAGMAS, timeout=30, returning_clause=True
        )
    else:
        database = connect_url(database_url)
    db.initialize(database)
    with database.connection_context():
        database.create_tables(TABLES, safe=True)
    return database


def write_transaction():
    """A transaction that takes the write lock before its first read.

    On SQLite this is ``BEGIN IMMEDIATE``: two writers that each read before
    they write would otherwise deadlock into "database is locked".
    """
    if isinstance(db.obj, pw.SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return db.atomic()
