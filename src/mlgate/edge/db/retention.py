"""Retention: delete what the bot no longer needs, so its database stays bounded.

Without it, every delivery, once-only effect, expired lock, ``/train`` record and piece of small
state stays forever (200k deliveries made an 834 MB SQLite file). :func:`prune` deletes, for a
cut-off ``now - retention_days``:

- deliveries that are finished (``done`` or ``failed``) and finished before the cut-off;
- once-only effects claimed before the cut-off, unless their delivery is still queued or running;
- locks that expired before the cut-off (a lock owner is unique to its holder, so a row gone and
  made again can never match a stale holder);
- the reply rows of PRs/MRs (``mlgate_replies``) untouched since the cut-off and not held now (the
  bot finds its comment again by its hidden marker), and promotion openings no delivery is
  writing;
- small state (``mlgate_kv``) last set before the cut-off: recorded approvals and pushes
  (``github:approval:``, ``gitlab:approval:``, ``github:synchronized:``; a PR idle that long
  fails closed: an unrecorded approval followed by a push is stale), legacy comment ids
  (``comment:``), ``/train`` workflows whose end was seen (``train:wf:`` with ``done``; they are
  taken out of their PR's ``train:pr:`` list, an emptied list goes too) and ``train:submitting:``
  markers of deliveries that are gone. Rows written before ``updated_at`` existed are stamped
  with the time of the first pass and age from there. Other keys (``train:active``,
  ``canary:audited:``) are kept.

Audit records are never deleted (the table is append-only). Canary records are history and are
kept too.

Deletes run in batches of :data:`BATCH` rows, one short transaction each, so workers claiming
deliveries at the same time wait for milliseconds, not for the whole pass (SQLite allows one
writer at a time; PostgreSQL locks only the rows deleted). Works on SQLite and PostgreSQL.
Times are UNIX seconds (float, UTC), as in :mod:`.tables`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from mlgate.edge.db.tables import deliveries, effects, kv, locks, promotion_openings, replies

#: Rows deleted per transaction.
BATCH = 2000
#: Seconds in a day (``retention_days`` is in days).
DAY = 86400.0
#: Small-state key prefixes deleted once older than the cut-off.
AGING_PREFIXES = ("github:approval:", "gitlab:approval:", "github:synchronized:", "comment:")


@dataclass(frozen=True)
class PruneReport:
    """Rows deleted (or, for a dry run, that would be deleted), per table or kind.

    ``cutoff``: UNIX seconds; rows older than this went. ``dry_run``: nothing was deleted.
    """

    cutoff: float
    dry_run: bool
    deliveries: int = 0
    effects: int = 0
    locks: int = 0
    replies: int = 0
    promotion_openings: int = 0
    state: int = 0
    train_records: int = 0

    @property
    def total(self) -> int:
        """Every row counted."""
        return (self.deliveries + self.effects + self.locks + self.replies + self.promotion_openings + self.state
                + self.train_records)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict, with ``total``."""
        return {**asdict(self), "total": self.total}

    def summary(self) -> str:
        """One line: ``deleted 12 deliveries, 3 effects, ...`` (``would delete`` for a dry run)."""
        verb = "would delete" if self.dry_run else "deleted"
        parts = [f"{getattr(self, k)} {k.replace('_', ' ')}" for k in
                 ("deliveries", "effects", "locks", "replies", "promotion_openings", "state", "train_records")]
        return f"{verb} {', '.join(parts)}"


def prune(engine: sa.Engine, now: float, retention_days: float, *, dry_run: bool = False,
          batch: int = BATCH) -> PruneReport:
    """Delete what is older than ``retention_days`` (see the module docstring).

    Args:
        engine: the bot's database (SQLite or PostgreSQL), holding its tables.
        now: the current time, UNIX seconds.
        retention_days: days to keep finished work (> 0; fractions allowed).
        dry_run: count only; nothing is deleted or stamped.
        batch: rows per delete transaction.

    Returns:
        A :class:`PruneReport` of what was deleted (or would be).

    Raises:
        ValueError: ``retention_days`` is not positive.
        sqlalchemy.exc.SQLAlchemyError: the database failed (what was deleted before stays deleted).
    """
    if not retention_days > 0:
        raise ValueError(f"retention_days must be positive, got {retention_days!r}")
    cutoff = now - retention_days * DAY
    d, e = deliveries.c, effects.c
    live = sa.select(d.id).where(d.status.in_(("queued", "running")))
    counts: dict[str, int] = {}
    counts["deliveries"] = _delete(engine, deliveries, d.id, sa.and_(d.status.in_(("done", "failed")),
                                                                  d.finished_at < cutoff), dry_run, batch)
    counts["effects"] = _delete(engine, effects, e.key, sa.and_(e.created_at < cutoff, e.delivery_id.not_in(live)),
                                dry_run, batch)
    counts["locks"] = _delete(engine, locks, locks.c.name, locks.c.expires_at < cutoff, dry_run, batch)
    r, o = replies.c, promotion_openings.c
    counts["replies"] = _delete_rows(engine, replies, (r.forge, r.repository, r.number), sa.and_(
        r.updated_at < cutoff, sa.or_(r.held_until.is_(None), r.held_until < now)), dry_run, batch)
    counts["promotion_openings"] = _delete_rows(engine, promotion_openings, (o.forge, o.repository, o.branch),
                                                sa.and_(o.updated_at < cutoff, o.writing.is_(None)), dry_run, batch)
    if not dry_run:
        _stamp_unknown_ages(engine, now)
    counts["state"] = _prune_state(engine, cutoff, dry_run, batch)
    counts["train_records"] = _prune_trains(engine, cutoff, dry_run)
    return PruneReport(cutoff=cutoff, dry_run=dry_run, **counts)


def _delete(engine: sa.Engine, table: sa.Table, key: sa.Column, where: Any, dry_run: bool, batch: int) -> int:
    """Delete the rows matching ``where`` in batches of ``batch`` keys; returns how many (or would)."""
    if dry_run:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar() or 0)
    total = 0
    while True:
        with engine.begin() as conn:
            keys = conn.execute(sa.select(key).where(where).limit(batch)).scalars().all()
            if not keys:
                return total
            conn.execute(table.delete().where(key.in_(keys), where))
        total += len(keys)
        if len(keys) < batch:
            return total


def _delete_rows(engine: sa.Engine, table: sa.Table, pk: tuple[sa.Column, ...], where: Any, dry_run: bool,
                 batch: int) -> int:
    """:func:`_delete` for a table with a composite primary key."""
    if dry_run:
        return _delete(engine, table, pk[0], where, True, batch)
    total = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(sa.select(*pk).where(where).limit(batch)).all()
            for row in rows:
                conn.execute(table.delete().where(*(c == v for c, v in zip(pk, row)), where))
        total += len(rows)
        if len(rows) < batch:
            return total


def _stamp_unknown_ages(engine: sa.Engine, now: float) -> None:
    """Rows of ``mlgate_kv`` written before ``updated_at`` existed age from now."""
    with engine.begin() as conn:
        conn.execute(kv.update().where(kv.c.updated_at.is_(None)).values(updated_at=now))


def _prune_state(engine: sa.Engine, cutoff: float, dry_run: bool, batch: int) -> int:
    """Aging small state, and ``train:submitting:<delivery>`` markers of deliveries that are gone."""
    k, d = kv.c, deliveries.c
    old = k.updated_at < cutoff
    aging = sa.or_(*(k.key.startswith(p, autoescape=True) for p in AGING_PREFIXES))
    n = _delete(engine, kv, k.key, sa.and_(old, aging), dry_run, batch)
    with engine.connect() as conn:
        markers = conn.execute(sa.select(k.key).where(old, k.key.startswith("train:submitting:"))).scalars().all()
        ids = {m.removeprefix("train:submitting:"): m for m in markers}
        present = set(conn.execute(sa.select(d.id).where(d.id.in_(list(ids)))).scalars()) if ids else set()
    gone = [m for i, m in ids.items() if i not in present]
    if gone and not dry_run:
        for i in range(0, len(gone), batch):
            with engine.begin() as conn:
                conn.execute(kv.delete().where(k.key.in_(gone[i:i + batch]), old))
    return n + len(gone)


def _prune_trains(engine: sa.Engine, cutoff: float, dry_run: bool) -> int:
    """``train:wf:`` records whose end was seen before the cut-off, out of their PR's list too."""
    k = kv.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(k.key, k.value).where(k.updated_at < cutoff,
                                                            k.key.startswith("train:wf:"))).all()
    done = {key for key, value in rows if _json(value, dict).get("done") is True}
    if not done or dry_run:
        return len(done)
    with engine.begin() as conn:
        conn.execute(kv.delete().where(k.key.in_(sorted(done)), k.updated_at < cutoff))
        for key, value in conn.execute(sa.select(k.key, k.value).where(k.key.startswith("train:pr:"))).all():
            keys = _json(value, list)
            kept = [x for x in keys if x not in done]
            if kept == keys:
                continue
            # compare-and-set: a worker that changed the list meanwhile keeps its change
            if kept:
                conn.execute(kv.update().where(k.key == key, k.value == value).values(value=json.dumps(kept)))
            else:
                conn.execute(kv.delete().where(k.key == key, k.value == value))
    return len(done)


def _json(text: str, kind: Callable[[], Any]) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return kind()
    return value if isinstance(value, kind) else kind()  # type: ignore[arg-type]
