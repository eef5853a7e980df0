"""`mlgate bot prune [--dry-run]` and the redaction of everything the bot CLI prints from the
database (`--output json`, tables, `show`, `audit`), on SQLite and PostgreSQL (issue 10)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from click.testing import CliRunner

from mlgate.bot.settings import BotSettings
from mlgate.cli import cli
from mlgate.core.errors import UsageError
from mlgate.edge.db.retention import DAY
from mlgate.edge.db.store import Store

TOKEN = "ghp_" + "Zz9" * 12
SECRET = "webhook-secret-Qx7"


def _run(args: list[str], db_url: str, **env: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, args, env={"MLGATE_DATABASE_URL": db_url, **env}, catch_exceptions=True)
    if isinstance(res.exception, UsageError):
        return 2, str(res.exception)
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def _old_delivery(store: Store, did: str, days_ago: float) -> None:
    at = datetime.fromtimestamp(time.time() - days_ago * DAY, UTC)
    store.accept(did, "github", "issue_comment", {}, b"{}", received_at=at)
    store.claim_next("w", at, 60)
    store.finish(did, "ok", now=at)


def test_prune_dry_run_then_prune(db_url: str) -> None:
    store = Store(db_url)
    _old_delivery(store, "old", 45)
    _old_delivery(store, "new", 1)
    store.audit({"outcome": "kept"})
    code, out = _run(["bot", "prune", "--dry-run"], db_url)
    assert code == 0 and out.startswith("would delete 1 deliveries") and "audit records are kept" in out
    assert len(store.list_deliveries()) == 2
    code, out = _run(["bot", "prune", "-o", "json"], db_url)
    report = json.loads(out)
    assert code == 0 and report["deliveries"] == 1 and report["dry_run"] is False and report["total"] >= 1
    assert [d.id for d in store.list_deliveries()] == ["new"]
    code, out = _run(["bot", "prune", "--days", "0.5"], db_url)
    assert code == 0 and out.startswith("deleted 1 deliveries")
    assert store.list_deliveries() == [] and len(store.audit_records()) == 1
    store.close()


def test_prune_with_retention_disabled_needs_days(db_url: str) -> None:
    Store(db_url).close()
    code, out = _run(["bot", "prune"], db_url, MLGATE_RETENTION_DAYS="0")
    assert code == 2 and "retention is disabled" in out


def test_the_store_masks_secrets_and_nul_in_what_it_writes(db_url: str) -> None:
    """Outcome, error and audit record pass the bot's redactor; NUL (refused by PostgreSQL text) is replaced."""
    store = Store(db_url)
    store.redactor = BotSettings(github_webhook_secret=SECRET).redactor({})
    for did in ("a", "b"):
        store.accept(did, "github", "issue_comment", {}, b"{}")
    store.claim_next("w", datetime.now(UTC), 60)
    store.claim_next("w", datetime.now(UTC), 60)
    assert store.finish("a", f"promote: failed (GitHub answered 403: {TOKEN} {SECRET} \x00)")
    assert store.fail("b", f"ForgeError: Authorization: token {TOKEN}", None)
    store.audit({"reasons": [f"GitHub answered 403: {TOKEN}"], SECRET: SECRET})
    rows = json.dumps([r.as_json() for r in store.list_deliveries()]) + json.dumps(store.audit_records())
    assert TOKEN not in rows and SECRET not in rows and "\\u0000" not in rows
    assert "***" in rows
    store.close()


def test_cli_output_is_masked_even_for_rows_written_before(db_url: str) -> None:
    store = Store(db_url)
    store.accept("d-1", "github", "issue_comment", {}, json.dumps({"comment": {"body": f"oops {TOKEN}"}}).encode())
    with store.engine.begin() as conn:  # as an older version wrote them: unmasked
        conn.execute(sa.text("UPDATE mlgate_deliveries SET status='failed', error=:e, finished_at=1 WHERE id='d-1'"),
                     {"e": f"ForgeError: GitHub answered 403: {SECRET} {TOKEN}"})
        conn.execute(sa.text("INSERT INTO mlgate_audit (recorded_at, record) VALUES (1, :r)"),
                     {"r": json.dumps({"reasons": [f"{SECRET} {TOKEN}"]})})
    env = {"MLGATE_GITHUB_WEBHOOK_SECRET": SECRET}
    for args in (["bot", "deliveries", "-o", "json"], ["bot", "deliveries"], ["bot", "show", "d-1"],
                 ["audit", "--format", "json"], ["audit"]):
        code, out = _run(args, db_url, **env)
        assert code == 0, out
        assert TOKEN not in out and SECRET not in out, f"{args}: a secret was printed"
    store.close()
