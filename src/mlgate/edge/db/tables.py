"""The bot's tables (SQLAlchemy Core metadata). Times are UNIX seconds (float, UTC)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

deliveries = sa.Table(
    "mlgate_deliveries",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("forge", sa.String(16), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    # the fencing token: one more at every claim, never reset (see mlgate.edge.db.fencing)
    sa.Column("fence", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_expires_at", sa.Float),
    sa.Column("outcome", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("finished_at", sa.Float),
    sa.Index("ix_mlgate_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_mlgate_deliveries_lease", "status", "lease_expires_at"),
)

effects = sa.Table(
    "mlgate_effects",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("delivery_id", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

locks = sa.Table(
    "mlgate_locks",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

audit_table = sa.Table(
    "mlgate_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recorded_at", sa.Float, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
)

kv = sa.Table(
    "mlgate_kv",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    #: when the value was last set (None: before this column existed); read by :mod:`.retention`
    sa.Column("updated_at", sa.Float),
)

#: mlgate's one comment per PR/MR (:mod:`mlgate.edge.db.replies`): its id, and who writes it now.
replies = sa.Table(
    "mlgate_replies",
    metadata,
    sa.Column("forge", sa.String(16), primary_key=True),
    sa.Column("repository", sa.String(255), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("comment_id", sa.String(64)),
    sa.Column("holder", sa.String(128)),
    sa.Column("held_until", sa.Float),
    sa.Column("updated_at", sa.Float, nullable=False),
)

#: Which delivery opened the promotion PR/MR of a branch (:mod:`mlgate.edge.db.replies`).
promotion_openings = sa.Table(
    "mlgate_promotion_openings",
    metadata,
    sa.Column("forge", sa.String(16), primary_key=True),
    sa.Column("repository", sa.String(255), primary_key=True),
    sa.Column("branch", sa.String(255), primary_key=True),
    sa.Column("writing", sa.String(128)),
    sa.Column("opener", sa.String(128)),
    sa.Column("number", sa.Integer),
    sa.Column("updated_at", sa.Float, nullable=False),
)

#: Columns added after a table was first created: (table, column, SQL type and default), added to
#: an existing database by :meth:`mlgate.edge.db.store.Store.create_schema` when missing.
ADDED_COLUMNS = [
    ("mlgate_deliveries", "fence", "INTEGER NOT NULL DEFAULT 0"),
    ("mlgate_kv", "updated_at", "FLOAT"),
]

#: Triggers that make the audit table append-only, per dialect.
APPEND_ONLY = {
    "sqlite": [
        "CREATE TRIGGER IF NOT EXISTS mlgate_audit_no_update BEFORE UPDATE ON mlgate_audit "
        "BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END",
        "CREATE TRIGGER IF NOT EXISTS mlgate_audit_no_delete BEFORE DELETE ON mlgate_audit "
        "BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION mlgate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'audit records are append-only'; END $$",
        "DROP TRIGGER IF EXISTS mlgate_audit_append_only ON mlgate_audit",
        "CREATE TRIGGER mlgate_audit_append_only BEFORE UPDATE OR DELETE ON mlgate_audit "
        "FOR EACH ROW EXECUTE FUNCTION mlgate_audit_append_only()",
    ],
}
