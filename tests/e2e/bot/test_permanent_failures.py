"""A failure that retrying cannot fix fails the delivery at once, with the reason (issue 10: a NUL
byte PostgreSQL refuses was retried 5 times), against ``mlgate bot serve`` on a real PostgreSQL
and the OpenAPI-checked fake GitHub."""

from __future__ import annotations

import uuid

import pytest

from mlgate.edge.db.store import Store
from tests.bot.conftest import pg_url, postgres_server  # noqa: F401  (fixtures: a fresh PostgreSQL database)
from tests.e2e.bot.conftest import BOT, ISVC, mlgate_yml, start_bot, stop_bot
from tests.e2e.bot.deliveries import github_comment, github_review

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_bot(fakes, mlflow_server, tmp_path, pg_url):  # noqa: F811
    gh, gl = fakes
    b = start_bot(tmp_path / "bot", gh.url, gl.url, mlflow_server, extra_env={"MLGATE_DATABASE_URL": pg_url})
    b.database_url = pg_url  # the bot's own database: the environment wins over bot.yml
    yield b
    stop_bot(b)


def _repo_with_pr(gh) -> tuple[str, int]:
    n = uuid.uuid4().hex[:6]
    repo, deploy = f"acme/nul{n}", f"acme/nuldeploy{n}"
    gh.add_repo(deploy, {"staging/isvc.yaml": ISVC.format(name=f"m{n}"), "production/isvc.yaml": ISVC.format(name=f"m{n}")})
    gh.add_repo(repo, {".mlgate.yml": mlgate_yml(f"m{n}", deploy), "train.py": "x\n"})
    gh.set_permission(repo, "carol", "maintain")
    gh.set_permission(repo, "bob", "write")
    gh.commit(repo, "feature", {"train.py": "y\n"}, author="alice")
    return repo, gh.open_pr(repo, "feature", user="alice").number


def _stored(bot, delivery_id: str):
    store = Store(bot.database_url)
    try:
        return store.get(delivery_id)
    finally:
        store.close()


def test_a_nul_byte_postgresql_refuses_fails_the_delivery_once_with_the_reason(fakes, pg_bot):
    """A review whose commit id holds a NUL byte: PostgreSQL refuses the text (DataError), which no
    retry can change: one attempt, failed, the reason stored (it was retried 5 times)."""
    gh, _ = fakes
    repo, pr = _repo_with_pr(gh)
    p = github_review(gh, repo, pr, "bob", "APPROVED", gh.head_sha(repo, pr) + "\x00")
    info = pg_bot.wait(pg_bot.send_github("pull_request_review", p))[0]
    assert (info.status, info.attempts) == ("failed", 1), info
    assert "DataError" in (info.error or "") and "NUL" in (info.error or ""), info.error
    got = _stored(pg_bot, info.id)
    assert got is not None and got.attempts == 1 and got.status == "failed"
    log = pg_bot.log.read_text()
    assert "will retry" not in "\n".join(ln for ln in log.splitlines() if info.id in ln)


@pytest.mark.parametrize("body", ["/promote\x00", "/promote to stag\x00ing", "/prom\x00ote", "/status \x00"])
def test_a_nul_byte_in_a_comment_is_handled_once_never_retried(fakes, pg_bot, body: str):
    gh, _ = fakes
    repo, pr = _repo_with_pr(gh)
    errors_before = len(gh.errors)
    info = pg_bot.wait(pg_bot.send_github("issue_comment", github_comment(gh, repo, pr, "carol", body)))[0]
    assert info.attempts == 1 and info.status in ("done", "failed"), f"retried: {info}"
    got = _stored(pg_bot, info.id)
    assert got is not None and got.attempts == 1
    assert "\x00" not in (got.outcome or "") + (got.error or "")
    assert gh.errors[errors_before:] == []
    assert len([c for c in gh.comments(repo, pr) if c.user == BOT]) <= 1
