"""The dashboard's read side on the bot's real database (SQLite): it holds the newest
``ui_audit_records`` audit records, never the whole append-only table."""

from __future__ import annotations

from mlgate.bot.settings import load_settings
from mlgate.bot.ui.sources import StoreSources
from mlgate.edge.db.store import Store


def test_the_dashboard_holds_the_newest_audit_records_only(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/bot.db")
    try:
        settings = load_settings(None, {"MLGATE_GITHUB_WEBHOOK_SECRET": "s", "MLGATE_UI_AUDIT_RECORDS": "100"})
        for i in range(250):
            store.audit({"model": "fraud", "event": f"e{i}"})
        sources = StoreSources(settings, store)
        first = sources.audit_records()
        assert [r["event"] for r in first] == [f"e{i}" for i in range(150, 250)]  # newest 100, oldest first
        for i in range(250, 280):
            store.audit({"model": "fraud", "event": f"e{i}"})
        again = sources.audit_records()
        assert [r["event"] for r in again] == [f"e{i}" for i in range(180, 280)]
        # the database still holds every record: `mlgate audit` exports them all
        assert len(store.audit_records()) == 280 and len(store.audit_records(after=270, newest=5)) == 5
    finally:
        store.close()
