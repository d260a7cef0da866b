"""The record: every table LeadHub keeps. Redis only carries wake-ups; the truth is here.

Times are stored as UTC epoch seconds (floats): they compare the same way on SQLite and
PostgreSQL, and the scheduler's "due" queries stay simple index range scans.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 32  # ULIDs are 26 characters; room for prefixed ids

#: The raw request, committed before the provider gets any answer.
inbound_events = Table(
    "inbound_events",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("source", String(128), nullable=False),
    Column("received_at", Double, nullable=False),
    Column("method", String(8), nullable=False),
    Column("path", Text, nullable=False, default=""),
    Column("query", Text, nullable=False, default=""),
    Column("headers", JSON, nullable=False),
    Column("body", LargeBinary, nullable=False),
    # lead | retry | non_lead | quarantined
    Column("outcome", String(16), nullable=False),
    Column("lead_id", String(ID)),
    Column("events", Integer, nullable=False, default=1),  # provider events, 0 for a retry
    Column("event_key", Text),
    Column("note", Text),
    Index(None, "received_at"),
    Index(None, "source", "received_at"),
)

#: Provider event ids (or body hashes) already seen: a retry of one is not a new event.
event_keys = Table(
    "event_keys",
    metadata,
    Column("source", String(128), primary_key=True),
    Column("event_key", String(200), primary_key=True),
    Column("lead_id", String(ID)),
    Column("inbound_id", String(ID), nullable=False),
    Column("seen_at", Double, nullable=False),
)

#: Events that continue a lead: the events of one call ("call:<id>"), the messages of one
#: chat ("chat:<id>"). Call events that arrive before the caller is known wait in ``pending``.
threads = Table(
    "threads",
    metadata,
    Column("source", String(128), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("lead_id", String(ID)),
    Column("last_seen", Double, nullable=False),
    Column("applied_seq", Integer),
    Column("pending", JSON),
)

leads = Table(
    "leads",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("source", String(128), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("received_at", Double, nullable=False),
    Column("status", String(24), nullable=False),
    Column("data", JSON, nullable=False),  # the contract's Lead JSON, without deliveries
    Column("duplicate_of", String(ID)),
    Column("assigned_to", String(64)),
    Column("inbound_id", String(ID)),
    Column("lease_until", Double, nullable=False, default=0.0),  # claimed by a process job
    # the source must fetch the lead's details (Source.enrich) before it is routed
    Column("needs_enrichment", Boolean, nullable=False, default=False),
    Column("updated_at", Double, nullable=False),
    Index(None, "status", "lease_until"),
    Index(None, "received_at"),
    Index(None, "source", "received_at"),
)

#: Normalized phones, emails and messenger ids of each lead, for cross-channel dedup.
contact_keys = Table(
    "contact_keys",
    metadata,
    Column("key", String(200), nullable=False),
    Column("lead_id", String(ID), nullable=False),
    Column("received_at", Double, nullable=False),
    Index(None, "key", "received_at"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("lead_id", String(ID), nullable=False),
    Column("destination", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed | dead
    Column("idempotency_key", String(100), nullable=False, unique=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("first_attempt_at", Double),
    Column("next_attempt_at", Double, nullable=False),
    Column("lease_until", Double, nullable=False, default=0.0),
    # the attempt that holds the lease: only it may record a result
    Column("attempt_id", String(ID)),
    # the last attempt that sent the item (committed before sending): destinations tag their
    # records with it, so the next attempt finds what an interrupted batch created
    Column("sent_attempt_id", String(ID)),
    # the last attempt may have reached the destination: look up before creating again
    Column("uncertain", Boolean, nullable=False, default=False),
    Column("external_id", String(200)),
    Column("last_error", Text),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("delivered_at", Double),
    UniqueConstraint("lead_id", "destination"),
    Index(None, "destination", "status", "next_attempt_at"),
    Index(None, "status", "updated_at"),
    Index(None, "destination", "updated_at"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("inbound_id", String(ID), nullable=False),
    Column("source", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("state", String(16), nullable=False, default="open"),  # open | reprocessed
    Column("lead_id", String(ID)),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index(None, "state", "created_at"),
)

#: Admin switches that outlive restarts (connector enable/disable).
connector_state = Table(
    "connector_state",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("updated_at", Double, nullable=False),
)

#: Shared, persistent counters (round-robin positions), advanced atomically in SQL.
counters = Table(
    "counters",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("value", Integer, nullable=False, default=0),
)

#: What the ledger counted in rows that retention purged (``hub/engine/retention.py``), per
#: UTC day: ``kind`` "event" (``name`` a source, ``key`` the raw request's outcome, ``n`` its
#: events), "lead" (a source, the lead's ledger category) or "delivery" (a destination, the
#: delivery's status). ``/api/ledger`` adds these to what the rows still say.
ledger_rollup = Table(
    "ledger_rollup",
    metadata,
    Column("day", Double, primary_key=True),  # UTC midnight, epoch seconds
    Column("kind", String(16), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("key", String(24), primary_key=True),
    Column("n", Integer, nullable=False),
)

#: One run of a ``[reconcile.*]`` job (``hub/reconcile/run.py``), with its progress and counts.
reconcile_runs = Table(
    "reconcile_runs",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("job", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # queued | running | done | failed
    Column("progress", Double, nullable=False, default=0.0),
    Column("created_at", Double, nullable=False),
    Column("started_at", Double),
    Column("finished_at", Double),
    Column("updated_at", Double, nullable=False),  # a running run's heartbeat
    Column("counts", JSON, nullable=False),
    Column("error", Text),
    Index(None, "job", "created_at"),
    Index(None, "status", "updated_at"),
)

#: A discrepancy a reconcile job found. ``identity`` (SHA-256 of job, kind and both sides'
#: client keys) makes a later run find the flag it raised before: it updates ``evidence``
#: and ``last_seen``, never raises it again, and never reopens a resolved one.
reconcile_flags = Table(
    "reconcile_flags",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("identity", String(64), nullable=False, unique=True),
    Column("job", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("accounting_key", Text, nullable=False),
    Column("crm_key", Text, nullable=False),
    Column("state", String(16), nullable=False),  # open | resolved
    Column("accounting", JSON),
    Column("crm", JSON),
    Column("evidence", JSON, nullable=False),
    Column("first_seen", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
    Column("resolved_at", Double),
    Column("run_id", String(ID), nullable=False),
    Index(None, "job", "state", "kind"),
)

# What retention and erasure look rows up by (migration 0002).
Index(None, quarantine.c.inbound_id)
Index(None, contact_keys.c.lead_id)
Index(None, event_keys.c.seen_at)
Index(None, threads.c.last_seen)
