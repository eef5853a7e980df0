"""The one comment client (mlgate.edge.forges.comments) over an in-memory transport.

Both callers (the bot's forges with MARKER, ``mlgate report publish`` with COMMENT_MARKER and a
key) are checked end to end against spec-checked fakes in tests/e2e; these cases pin the shared
find/update/create rule itself.
"""

from __future__ import annotations

from mlgate.core.ci_report import comment_body
from mlgate.edge.forges.base import MARKER
from mlgate.edge.forges.ci_comments import _ours
from mlgate.edge.forges.comments import upsert_marked_comment


class Thread:
    def __init__(self, *bodies: str):
        self.items = [{"id": i + 1, "body": b} for i, b in enumerate(bodies)]
        self.calls: list[tuple] = []

    def comments(self):
        self.calls.append(("list",))
        return list(self.items)

    def create(self, body):
        self.calls.append(("create",))
        c = {"id": len(self.items) + 1, "body": body}
        self.items.append(c)
        return c

    def update(self, comment_id, body, *, missing_ok=False):
        self.calls.append(("update", comment_id))
        for c in self.items:
            if c["id"] == comment_id:
                c["body"] = body
                return c
        if missing_ok:
            return None
        raise LookupError(comment_id)


def marked(c):
    return MARKER in c["body"]


def test_creates_when_no_comment_is_marked():
    t = Thread("hello", "lgtm")
    action, c = upsert_marked_comment(t, f"{MARKER}\nreport", marked)
    assert (action, c["id"]) == ("created", 3) and t.calls == [("list",), ("create",)]


def test_updates_the_first_marked_comment_in_place():
    t = Thread("hello", f"{MARKER}\nold", f"{MARKER}\nolder copy")
    action, c = upsert_marked_comment(t, f"{MARKER}\nnew", marked)
    assert (action, c["id"]) == ("updated", 2) and t.items[1]["body"].endswith("new")
    assert t.items[2]["body"].endswith("older copy")


def test_a_known_id_is_updated_without_listing_and_a_gone_one_falls_back_to_the_search():
    t = Thread("hello", f"{MARKER}\nold")
    assert upsert_marked_comment(t, f"{MARKER}\nv2", marked, known_id=2)[0] == "updated"
    assert t.calls == [("update", 2)]
    t.calls.clear()
    action, c = upsert_marked_comment(t, f"{MARKER}\nv3", marked, known_id=99)
    assert (action, c["id"]) == ("updated", 2) and t.calls == [("update", 99), ("list",), ("update", 2)]


def test_report_comments_are_told_apart_by_their_key():
    t = Thread(comment_body("a", "models/a.yml"), comment_body("plain"), f"{MARKER}\nthe bot's comment")
    assert upsert_marked_comment(t, comment_body("b", "models/b.yml"), _ours("models/b.yml"))[0] == "created"
    action, c = upsert_marked_comment(t, comment_body("a2", "models/a.yml"), _ours("models/a.yml"))
    assert (action, c["id"]) == ("updated", 1)
    action, c = upsert_marked_comment(t, comment_body("plain2"), _ours(None))
    assert (action, c["id"]) == ("updated", 2) and t.items[2]["body"] == f"{MARKER}\nthe bot's comment"
