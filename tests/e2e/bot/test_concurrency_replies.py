"""Issue 10, "One mlgate comment per PR breaks under concurrency": many commands at once on one
PR/MR, handled by 8 worker threads of ``mlgate bot serve`` (SQLite, and a real PostgreSQL), leave
exactly one mlgate comment there, holding the last reply.

Before the fix each worker read the stored comment id, found none, listed the comments, found
none and posted its own: ten comments at once left 2 to 5 bot comments.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.bot.conftest import pg_url, postgres_server  # noqa: F401  (fixtures: a real PostgreSQL)
from tests.e2e.bot.conftest import BOT, ISVC, BotProcess, World, mlgate_yml, start_bot, stop_bot
from tests.e2e.bot.deliveries import github_comment, gitlab_note

pytestmark = pytest.mark.slow

WORKERS = {"MLGATE_WORKERS": "8"}


def _bot(tmp: Path, fakes: Any, mlflow_server: str, database_url: str | None = None) -> BotProcess:
    gh, gl = fakes
    env = dict(WORKERS, **({"MLGATE_DATABASE_URL": database_url} if database_url else {}))
    b = start_bot(tmp, gh.url, gl.url, mlflow_server, extra_env=env)
    if database_url:
        b.database_url = database_url  # the harness reads deliveries where the bot writes them
    return b


@pytest.fixture(scope="module")
def bot8(fakes, mlflow_server, tmp_path_factory: pytest.TempPathFactory):
    b = _bot(tmp_path_factory.mktemp("bot8"), fakes, mlflow_server)
    yield b
    stop_bot(b)


def github_world(gh: Any, bot: BotProcess, client: Any) -> World:
    n = uuid.uuid4().hex[:6]
    model, repo, deploy = f"conc-{n}", f"acme/conc-{n}", f"acme/conc-deploy-{n}"
    gh.add_repo(deploy, {"staging/isvc.yaml": ISVC.format(name=model), "production/isvc.yaml": ISVC.format(name=model)})
    gh.add_repo(repo, {".mlgate.yml": mlgate_yml(model, deploy), "train.py": "print('train')\n"})
    for user, role in (("alice", "write"), ("bob", "write"), ("carol", "maintain")):
        gh.set_permission(repo, user, role)
    client.create_registered_model(model)
    w = World(gh=gh, bot=bot, client=client, model=model, repo=repo, deploy=deploy)
    gh.commit(repo, "feature", {"train.py": "print('better')\n"}, author="alice")
    w.pr = gh.open_pr(repo, "feature", user="alice", title="Better model").number
    return w


def burst(send, count: int) -> list[str]:
    """Send ``count`` commands at once (one thread each); the delivery ids."""
    bodies = ["/help" if i % 2 else "/status" for i in range(count)]
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(send, bodies))


def github_burst(w: World, count: int) -> None:
    errors = len(w.gh.errors)
    ids = burst(lambda body: w.bot.send_github("issue_comment", w.comment(body, "carol")), count)
    infos = w.bot.wait(*ids, timeout=180)
    assert [i.status for i in infos] == ["done"] * count, [(i.status, i.error) for i in infos]
    mine = [c for c in w.gh.comments(w.repo, w.pr) if c.user == BOT]
    assert len(mine) == 1, f"{len(mine)} mlgate comments after {count} commands at once"
    assert mine[0].body.startswith("<!-- mlgate -->") and "**mlgate**" in mine[0].body
    assert len(w.gh.calls("POST", rf"^/repos/{w.repo}/issues/{w.pr}/comments$")) == 1
    assert w.gh.errors[errors:] == []


@pytest.mark.parametrize("count", [10, 20])
def test_commands_at_once_on_one_github_pr_leave_one_comment(fakes, bot8, mlflow_client, count):
    gh, _ = fakes
    github_burst(github_world(gh, bot8, mlflow_client), count)


def test_commands_at_once_on_one_gitlab_mr_leave_one_note(fakes, bot8):
    _, gl = fakes
    n = uuid.uuid4().hex[:6]
    proj = gl.add_project(f"grp/conc-{n}", {".mlgate.yml": mlgate_yml(f"conc-{n}", f"grp/conc-deploy-{n}")})
    gl.set_access(proj.path, "carol", 40)
    sha = gl.commit(proj.path, "feature", {"train.py": "x = 2\n"}, author="alice")
    mr = gl.open_mr(proj.path, "feature", author="alice")
    errors = len(gl.errors)
    ids = burst(lambda body: bot8.send_gitlab(
        "Note Hook", gitlab_note(proj, mr.iid, "carol", gl.user("carol"), body, sha)), 20)
    infos = bot8.wait(*ids, timeout=180)
    assert [i.status for i in infos] == ["done"] * 20, [(i.status, i.error) for i in infos]
    mine = [x for x in proj.notes.values() if x.mr == mr.iid and x.author == BOT]
    assert len(mine) == 1, f"{len(mine)} mlgate notes after 20 commands at once"
    assert gl.errors[errors:] == []


def test_commands_at_once_leave_one_comment_with_the_store_on_postgresql(fakes, mlflow_server, mlflow_client,
                                                                         pg_url, tmp_path):  # noqa: F811
    """The reply's hold is a row in the shared database: the same holds on PostgreSQL, where two
    replicas would meet."""
    gh, _ = fakes
    b = _bot(tmp_path / "bot", fakes, mlflow_server, database_url=pg_url)
    try:
        github_burst(github_world(gh, b, mlflow_client), 20)
    finally:
        stop_bot(b)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/bot.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")


def test_the_reply_hold_and_the_promotion_openings_on_both_databases(store_url):
    """The store's side, on SQLite and PostgreSQL: a held reply waits for its holder and is taken
    over when the hold lapses (the holder died); who opened a promotion PR, across attempts."""
    import threading

    from mlgate.edge.db.replies import PromotionOpenings, Replies, ReplyBusy
    from mlgate.edge.db.store import Store

    store = Store(store_url)
    try:
        replies = Replies(store.engine)
        with replies.hold("github", "acme/m", 1) as h:
            assert h.comment_id is None
            h.comment_id = "77"
            with pytest.raises(ReplyBusy):  # a second writer waits, then gives up
                with replies.hold("github", "acme/m", 1, wait=0.3):
                    pass
        assert replies.comment_id("github", "acme/m", 1) == "77"
        order: list[str] = []
        abandoned = []  # a holder that never lets go (its process died): kept referenced, never exited

        def second() -> None:
            cm = replies.hold("github", "acme/m", 1, ttl=1.0)
            abandoned.append(cm)
            cm.__enter__()
            order.append("2")

        with replies.hold("github", "acme/m", 1) as h:
            t = threading.Thread(target=second)
            t.start()
            t.join(0.3)
            order.append("1")
            assert h.comment_id == "77"
        t.join(5)
        assert order == ["1", "2"]  # the second waited for the first
        with pytest.raises(ReplyBusy):
            with replies.hold("github", "acme/m", 1, wait=0.3):
                pass
        with replies.hold("github", "acme/m", 1, wait=5) as h:  # the dead holder's hold lapsed: taken over
            assert h.comment_id == "77"

        o = PromotionOpenings(store.engine)
        branch = "mlgate/promote/iris/staging/v2"
        first = o.begin("github", "acme/deploy", branch, "d1")
        assert not first.retry and not o.finish(first, 5, created=False)  # found open on a first attempt
        again = o.begin("github", "acme/deploy", branch, "d2")
        assert o.finish(again, 5, created=True)  # d2 opened it
        retry = o.begin("github", "acme/deploy", branch, "d3")
        killed = o.begin("github", "acme/deploy", branch, "d3")  # d3's first attempt died after its create call
        assert not retry.retry and killed.retry
        assert not o.finish(killed, 5, created=False)  # but #5 is d2's: d3 found it, did not open it
        r1 = o.begin("github", "acme/deploy", branch, "d4")
        r2 = o.begin("github", "acme/deploy", branch, "d4")
        assert r1 and o.finish(r2, 9, created=False)  # #9 nobody opened; d4's lost create did
        assert o.finish(o.begin("github", "acme/deploy", branch, "d4"), 9, created=False)  # d4 once more: still its
        assert not o.finish(o.begin("github", "acme/deploy", branch, "d5"), 9, created=False)
    finally:
        store.close()
