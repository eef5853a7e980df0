"""Scenarios of issue 3 end to end: signed deliveries → ``mlgate bot serve`` → fake GitHub (OpenAPI-checked,
real git) and a real MLflow server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.bot.conftest import BOT, World
from tests.e2e.bot.forge_calls import create_pr

pytestmark = pytest.mark.slow


def _fingerprint(yml: str) -> str:
    """The gates fingerprint ``mlgate validate`` records for a version validated under ``yml``."""
    from mlgate.core.config import parse
    from mlgate.core.promotion import gates_fingerprint

    return gates_fingerprint(parse(yml))


def approve(w: World, user: str, sha: str | None = None) -> None:
    w.gh.add_review(w.repo, w.pr, user, "APPROVED", commit_id=sha or w.head())


def test_promote_opens_a_pr_whose_diff_changes_only_the_intended_line(world: World):
    w = world
    version = w.register(w.head())
    approve(w, "bob")
    info = w.promote("/promote", by="carol")
    assert info.status == "done", info
    prs = w.promotion_prs()
    assert len(prs) == 1, info.outcome
    pr = prs[0]
    assert pr.head == f"mlgate/promote/{w.model}/staging/v{version}"
    g = w.gh.repos[w.deploy].git
    diff = g.diff(g.branch("main"), g.branch(pr.head))
    changed = [l for l in diff.splitlines() if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    assert len(changed) == 2, diff
    assert changed[0].strip().startswith("-") and "storageUri" in changed[0] and "bootstrap" in changed[0]
    assert "storageUri" in changed[1] and f"s3://models/{w.model}/" in changed[1]
    assert "# managed by mlgate" in changed[1]  # the comment on the line survives
    assert "mlgate-promotion" in pr.labels
    assert "@bob" in pr.body and f"#{w.pr}" in pr.body or f"/pull/{w.pr}" in pr.body
    assert "| metric gates | ✅ |" in pr.body
    reply = w.reply()
    assert "<!-- mlgate -->" in reply and "Promotion PR opened" in reply
    statuses = w.gh.statuses(w.repo, w.head())
    assert statuses and statuses[-1]["context"] == "mlgate/gates" and statuses[-1]["state"] == "success"
    rec = [a for a in w.bot.audit() if a.get("model") == w.model]
    assert rec and rec[-1]["allowed"] is True and rec[-1]["actor"] == "carol" and rec[-1]["version"] == version



def test_redelivered_promote_opens_one_pr(world: World):
    w = world
    w.register(w.head())
    approve(w, "bob")
    payload = w.comment("/promote", "carol")
    d1 = w.bot.send_github("issue_comment", payload)
    w.bot.wait(d1)
    # a manual redelivery keeps X-GitHub-Delivery; an organisation hook sends the same comment
    # under another delivery id
    d2 = w.bot.send_github("issue_comment", payload, delivery=d1)
    d3 = w.bot.send_github("issue_comment", payload)
    assert d2 == d1
    info = w.bot.wait(d3)[0]
    assert info.status == "done" and "already handled" in info.outcome
    assert len(w.promotion_prs()) == 1
    assert len(w.gh.calls("POST", create_pr(w.deploy))) == 1


def test_promote_by_a_user_without_permission_is_refused_with_the_reason(world: World):
    w = world
    w.register(w.head())
    approve(w, "bob")
    info = w.promote("/promote", by="dave")
    assert info.status == "done" and "refused" in info.outcome
    assert w.promotion_prs() == []
    reply = w.reply()
    assert "was refused" in reply and "@dave has read permission" in reply and "needs write or higher" in reply
    rec = [a for a in w.bot.audit() if a.get("model") == w.model][-1]
    assert rec["allowed"] is False and rec["actor"] == "dave" and "read permission" in rec["reasons"][0]


def test_approval_then_a_new_push_makes_the_approval_stale(world: World):
    from tests.e2e.bot.deliveries import github_pull_request, github_review

    w = world
    first = w.head()
    w.register(first)
    approve(w, "bob")
    d = w.bot.send_github("pull_request_review", github_review(w.gh, w.repo, w.pr, "bob", "approved", first))
    w.bot.wait(d)
    assert w.gh.statuses(w.repo, first)[-1]["state"] == "success"
    second = w.push()
    w.register(second)
    d = w.bot.send_github("pull_request", github_pull_request(w.gh, w.repo, w.pr, "synchronize"))
    w.bot.wait(d)
    st = w.gh.statuses(w.repo, second)[-1]
    assert st["state"] == "pending" and "approvals" in st["description"]
    info = w.promote("/promote", by="carol")
    assert "refused" in info.outcome and w.promotion_prs() == []
    assert "stale" in w.reply() and first[:7] in w.reply()
    approve(w, "bob", second)
    info = w.promote("/promote", by="carol")
    assert "promotion PR opened" in info.outcome
    assert len(w.promotion_prs()) == 1


def test_self_approval_does_not_count(world: World):
    w = world
    w.register(w.head())
    approve(w, "alice")  # alice wrote the PR
    w.bot.wait(w.bot.send_github("issue_comment", w.comment("LGTM, ship it", "alice")))
    info = w.promote("/promote", by="alice")
    assert "refused" in info.outcome and w.promotion_prs() == []
    assert "author's own approval does not count" in w.reply()


def test_changes_requested_blocks(world: World):
    w = world
    w.register(w.head())
    approve(w, "bob")
    w.gh.add_review(w.repo, w.pr, "carol", "CHANGES_REQUESTED", commit_id=w.head(), body="threshold too low")
    info = w.promote("/promote", by="carol")
    assert "refused" in info.outcome and w.promotion_prs() == []
    assert "changes requested by @carol" in w.reply()


def test_a_pr_that_lowers_its_own_gates_does_not_change_the_policy(world: World):
    from tests.e2e.bot.conftest import mlgate_yml

    w = world
    sha = w.push({".mlgate.yml": mlgate_yml(w.model, w.deploy, staging_approvals=0)})
    w.register(sha)
    info = w.promote("/promote", by="carol")  # no approvals at all
    assert "refused" in info.outcome and w.promotion_prs() == []
    assert "0/1 approvals" in w.reply()


def test_two_concurrent_promotes_for_one_target_open_one_pr(world: World):
    w = world
    w.register(w.head())
    approve(w, "bob")
    d1 = w.bot.send_github("issue_comment", w.comment("/promote", "carol"))
    d2 = w.bot.send_github("issue_comment", w.comment("/promote to staging", "bob"))
    infos = w.bot.wait(d1, d2)
    assert all(i.status == "done" for i in infos), infos
    assert len(w.promotion_prs()) == 1
    assert len(w.gh.calls("POST", create_pr(w.deploy))) <= 2
    outcomes = " | ".join(i.outcome for i in infos)
    assert "promotion PR opened" in outcomes
    assert "busy" in outcomes or "promotion PR updated" in outcomes


def test_merging_the_promotion_pr_moves_the_alias(world: World):
    from tests.e2e.bot.deliveries import github_merged

    w = world
    version = w.register(w.head())
    approve(w, "bob")
    w.promote("/promote", by="carol")
    pr = w.promotion_prs()[0]
    w.gh.merge_pr(w.deploy, pr.number)
    d = w.bot.send_github("pull_request", github_merged(w.gh, w.deploy, pr.number))
    info = w.bot.wait(d)[0]
    assert info.status == "done" and "alias staging" in info.outcome, info
    mv = w.client.get_model_version_by_alias(w.model, "staging")
    assert str(mv.version) == version
    assert mv.tags["mlgate.promoted.staging.url"].endswith(f"/pull/{pr.number}")
    assert mv.tags["mlgate.promoted.staging.commit"] == w.gh.repos[w.deploy].pulls[pr.number].merge_commit
    moved = [a for a in w.bot.audit() if a.get("model") == w.model and a.get("event") == "alias moved"]
    assert len(moved) == 1 and moved[0]["version"] == version
    assert "is live in `staging`" in w.reply()


def test_ignored_comments_do_nothing(world: World):
    from mlgate.core.commands import help_text

    w = world
    w.register(w.head())
    approve(w, "bob")
    bot_help = w.comment(help_text() + "\n/promote", BOT, user_type="Bot")
    edited = w.comment("/promote", "carol", action="edited")
    quoted = w.comment("> /promote\nwhat does this do?", "carol")
    folder = w.comment("/promotions/2024 folder has the plots", "carol")
    ds = [w.bot.send_github("issue_comment", p) for p in (bot_help, edited, quoted, folder)]
    infos = w.bot.wait(*ds)
    assert infos[0].outcome.startswith("ignored") and "bot" in infos[0].outcome
    assert infos[1].outcome.startswith("ignored") and "edited" in infos[1].outcome
    assert infos[2].outcome == infos[3].outcome == "no command in the comment"
    assert w.promotion_prs() == [] and w.reply() == ""


def test_unknown_flag_gets_a_usage_reply_and_runs_nothing(world: World):
    w = world
    w.register(w.head())
    approve(w, "bob")
    info = w.promote("/promote --force", by="carol")
    assert "usage error" in info.outcome and w.promotion_prs() == []
    assert "unknown flag '--force'" in w.reply() and "/promote [MODEL][@VERSION] [to ENV]" in w.reply()


def test_approval_is_bound_to_the_promoted_version_and_environment(world: World):
    w = world
    other = w.register("f" * 40)  # a version registered for some other commit
    w.register(w.head())
    approve(w, "bob")
    info = w.promote(f"/promote {w.model}@{other}", by="carol")
    assert "refused" in info.outcome and f"version {other} was not reviewed here" in w.reply()
    info = w.promote("/promote to production", by="carol")
    assert "refused" in info.outcome
    reply = w.reply()
    assert "production requires staging first" in reply and "for production" in reply
    assert w.promotion_prs() == []


def test_status_and_help_reply_in_the_one_mlgate_comment(world: World):
    w = world
    version = w.register(w.head())
    info = w.promote("/status", by="dave")  # anyone may ask
    assert info.outcome == "status: not ready"
    reply = w.reply()
    assert f"version {version}" in reply and "0/1 approvals" in reply and "| metric gates | ✅ |" in reply
    assert w.gh.statuses(w.repo, w.head())[-1]["state"] == "pending"
    w.promote("/help", by="dave")
    reply = w.reply()  # the same comment, now the help text
    assert "/rollback [MODEL] [ENV]" in reply and "```" in reply
    assert w.promotion_prs() == []


# ---------------------------------------------------------------- a canary stopped while a step PR is open

CANARY_FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "canary" / "kserve-serverless.yaml"


def canary_yml(model: str, deploy: str) -> str:
    # Prometheus is never asked: no step goes live in these scenarios
    return f"""model: {model}
tracking_uri: http://mlflow.invalid:5000
environments:
  - name: production
    gitops:
      repository: {deploy}
      path: prod/isvc.yaml
      mode: pull-request
      target: {{kind: kserve, name: fraud-model}}
    promoters: {{min_permission: maintain}}
    approvals: {{required: 1}}
    canary:
      steps: [10, 50, 100]
      interval: 60
      analysis:
        prometheus: http://127.0.0.1:9
        checks:
          - name: error_rate
            query: 'max(model_error_ratio{{model="{{model}}",version="{{version}}"}})'
            max: 0.05
      target: {{kind: kserve, name: fraud-model}}
"""


def canary_world(gh, bot, client) -> World:
    """v1 holds champion; the PR's head commit registered v2 (gates passed) and bob approved it."""
    n = uuid.uuid4().hex[:6]
    model, repo, deploy = f"stopped-{n}", f"acme/smodel-{n}", f"acme/sdeploy-{n}"
    gh.add_repo(deploy, {"prod/isvc.yaml": CANARY_FIXTURE.read_text().replace("MODEL", model)})
    gh.add_repo(repo, {".mlgate.yml": canary_yml(model, deploy), "train.py": "print('train')\n"})
    for user, role in (("alice", "write"), ("bob", "write"), ("carol", "maintain")):
        gh.set_permission(repo, user, role)
    gh.set_permission(deploy, BOT, "write")
    client.create_registered_model(model)
    v1 = client.create_model_version(model, source=f"s3://models/{model}/1",
                                     tags={"mlgate.git_commit": "e" * 40, "mlgate.gates": "passed",
                                           "mlgate.gates.fingerprint": _fingerprint(canary_yml(model, deploy))})
    client.set_registered_model_alias(model, "champion", v1.version)
    w = World(gh=gh, bot=bot, client=client, model=model, repo=repo, deploy=deploy)
    gh.commit(repo, "feature", {"train.py": "print('better')\n"}, author="alice", message="better model")
    w.pr = gh.open_pr(repo, "feature", user="alice", title="Better model").number
    client.create_model_version(model, source=f"s3://models/{model}/2",
                                tags={"mlgate.git_commit": w.head(), "mlgate.gates": "passed",
                                      "mlgate.gates.fingerprint": _fingerprint(canary_yml(model, deploy))})
    approve(w, "bob")
    return w


@pytest.fixture
def stopped(fakes, bot, mlflow_client):
    gh, _ = fakes
    errors = len(gh.errors)
    w = canary_world(gh, bot, mlflow_client)
    info = w.promote("/promote to production", by="carol")
    assert "canary" in info.outcome and "started" in info.outcome, info
    [step] = [p for p in gh.pulls(w.deploy, state="open") if p.head.startswith("mlgate/canary/")]
    assert "at 10 %" in step.title
    yield w, step
    assert gh.errors[errors:] == [], "the bot sent requests GitHub's OpenAPI description rejects"


def _merge_anyway(w: World, step: Any) -> Any:
    """Someone reopens the closed step PR and merges it; GitHub sends the merge webhook."""
    from tests.e2e.bot.deliveries import github_merged

    w.gh.repos[w.deploy].pulls[step.number].state = "open"
    w.gh.merge_pr(w.deploy, step.number)
    return w.bot.wait(w.bot.send_github("pull_request", github_merged(w.gh, w.deploy, step.number)))[0]


def _canary(w: World):
    from mlgate.edge.db.canaries import CanaryStore

    return CanaryStore(w.bot.database_url, create=False).latest(w.model, "production")


def _bot_comments(w: World, number: int) -> list[str]:
    return [c.body for c in w.gh.comments(w.deploy, number) if c.user == BOT]


@pytest.mark.parametrize("command,word", [("/rollback", "rolled back"), ("/abort", "aborted")])
def test_stopping_a_canary_closes_its_open_step_pr_and_a_late_merge_advances_nothing(stopped, command, word):
    from tests.e2e.bot.deliveries import github_merged

    w, step = stopped
    info = w.promote(command, by="carol")
    assert info.status == "done" and ("rolling_back" in info.outcome or "aborted" in info.outcome), info
    pr = w.gh.repos[w.deploy].pulls[step.number]
    assert pr.state == "closed" and not pr.merged  # closed by the bot, with the reason
    [why] = _bot_comments(w, step.number)
    assert f"{word} by @carol" in why and "must not be merged" in why and "10 % of the traffic" in why
    assert "Step pull requests that were not merged" in w.reply() and "closed" in w.reply()
    closed = [a for a in w.bot.audit() if a.get("event") == "step PR closed" and a.get("model") == w.model]
    assert len(closed) == 1 and closed[0]["outcome"] == "closed" and closed[0]["step"] == 1
    before = _canary(w)
    assert before.status in ("rolling_back", "aborted")
    open_prs = [p.head for p in w.gh.pulls(w.deploy, state="open")]
    if command == "/rollback":  # the rollback PR stays open: it is what sends the traffic back
        assert len(open_prs) == 1 and open_prs[0].endswith("/rollback") and before.rollback.live_at is None
    else:
        assert open_prs == []

    done = _merge_anyway(w, step)
    assert done.status == "done" and "ignored" in done.outcome, done
    after = _canary(w)
    assert after.status == before.status and after.revision == before.revision  # nothing advanced
    if after.rollback is not None:
        assert after.rollback.live_at is None  # the step's merge is not the rollback going live
    assert "this merge was ignored" in _bot_comments(w, step.number)[-1]
    assert "revert this merge" in _bot_comments(w, step.number)[-1]
    [ignored] = [a for a in w.bot.audit() if a.get("event") == "merged" and a.get("model") == w.model]
    assert ignored["allowed"] is False and ignored["outcome"].startswith("ignored") and ignored["canary"] == after.id
    assert w.client.get_model_version_by_alias(w.model, "champion").version == "1"
    # the same merge through another hook does nothing more
    again = w.bot.wait(w.bot.send_github("pull_request", github_merged(w.gh, w.deploy, step.number)))[0]
    assert "already handled" in again.outcome and len(_bot_comments(w, step.number)) == 2
