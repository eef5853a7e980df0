"""Canary promotion through the bot, end to end (issue 5 "Flow", issue 3 bot): a signed ``/promote to
production`` → ``mlgate bot serve`` (its own process, canary ticks every 0.3 s) → step PRs on the
OpenAPI-checked fake GitHub (real git) → the test merges each one and sends the merge webhook → the
bot measures a real Prometheus scraping an exporter the test controls, advances, and moves the
``champion`` alias in a real MLflow registry; ``/rollback`` writes the rollback.

The Prometheus and exporter fixtures are the canary tests' own (imported from tests/flows/conftest.py).
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest

from tests.e2e.bot.conftest import BOT, BotProcess, World, eventually, start_bot, stop_bot
from tests.flows.conftest import FIXTURES
from tests.conftest import wait_for_value


def _fingerprint(yml: str) -> str:
    """The gates fingerprint ``mlgate validate`` records for a version validated under ``yml``."""
    from mlgate.core.config import parse
    from mlgate.core.promotion import gates_fingerprint

    return gates_fingerprint(parse(yml))

pytestmark = pytest.mark.slow

_n = itertools.count(1)


# --------------------------------------------------------------------------- a bot process with its own settings


@pytest.fixture(scope="module")
def canary_bot(fakes, mlflow_server, tmp_path_factory: pytest.TempPathFactory):
    gh, gl = fakes
    b = start_bot(tmp_path_factory.mktemp("canary-bot"), gh.url, gl.url, mlflow_server,
                  "canary_tick_seconds: 0.3\ntrain_poll_seconds: 0\n")
    yield b
    stop_bot(b)


# --------------------------------------------------------------------------- one canary scenario


def mlgate_yml(model: str, deploy: str, prom: str, mode: str = "pull-request", steps: str = "[10, 50, 100]",
               check: str = "max: 0.05", extra: str = "", ctarget: str = "{kind: kserve, name: fraud-model}",
               analysis: str = "") -> str:
    return f"""model: {model}
tracking_uri: http://mlflow.invalid:5000
environments:
  - name: production
    gitops:
      repository: {deploy}
      path: prod/isvc.yaml
      mode: {mode}
      target: {{kind: kserve, name: fraud-model}}
    promoters: {{min_permission: maintain}}
    approvals: {{required: 1}}
    canary:
      {"steps: " + steps if steps else "strategy: blue-green"}
      interval: 0.5{extra}
      analysis:
        prometheus: {prom}
        timeout: 2{analysis}
        checks:
          - name: error_rate
            query: 'max(model_error_ratio{{model="{{model}}",version="{{version}}"}})'
            {check}
            samples_query: 'sum(model_requests{{model="{{model}}",version="{{version}}"}})'
            min_samples: 100
      target: {ctarget}
"""


@pytest.fixture
def cworld(fakes, canary_bot, mlflow_client, prometheus) -> World:  # noqa: F811
    """A model repo with an open PR whose head commit registered v2 (gates passed, approved by bob),
    v1 holding ``champion``, and a GitOps repo whose production InferenceService serves v1."""
    gh, _ = fakes
    errors_before = len(gh.errors)
    yield make_cworld(gh, canary_bot, mlflow_client, prometheus)
    assert gh.errors[errors_before:] == [], "the bot sent requests GitHub's OpenAPI description rejects"


def make_cworld(gh: Any, bot: BotProcess, mlflow_client: Any, prom: str, **cfg: Any) -> World:
    n = next(_n)
    model = f"cbot{n}-{uuid.uuid4().hex[:6]}"
    repo, deploy = f"acme/cmodel{n}", f"acme/cdeploy{n}"
    isvc = (FIXTURES / "kserve-serverless.yaml").read_text().replace("MODEL", model)
    gh.add_repo(deploy, {"prod/isvc.yaml": isvc})
    gh.add_repo(repo, {".mlgate.yml": mlgate_yml(model, deploy, prom, **cfg), "train.py": "print('train')\n"})
    for user, role in (("alice", "write"), ("bob", "write"), ("carol", "maintain"), ("dave", "read")):
        gh.set_permission(repo, user, role)
    gh.set_permission(deploy, BOT, "write")
    mlflow_client.create_registered_model(model)
    fp = _fingerprint(mlgate_yml(model, deploy, prom, **cfg))  # as `mlgate validate` records it
    v1 = mlflow_client.create_model_version(model, source=f"s3://models/{model}/1",
                                            tags={"mlgate.git_commit": "e" * 40, "mlgate.gates": "passed",
                                                  "mlgate.gates.fingerprint": fp})
    mlflow_client.set_registered_model_alias(model, "champion", v1.version)
    w = World(gh=gh, bot=bot, client=mlflow_client, model=model, repo=repo, deploy=deploy)
    gh.commit(repo, "feature", {"train.py": "print('better')\n"}, author="alice", message="better model")
    w.pr = gh.open_pr(repo, "feature", user="alice", title="Better model").number
    mv = mlflow_client.create_model_version(model, source=f"s3://models/{model}/2",
                                            tags={"mlgate.git_commit": w.head(), "mlgate.gates": "passed",
                                                  "mlgate.gates.fingerprint": fp})
    assert str(mv.version) == "2"
    gh.add_review(repo, w.pr, "bob", "APPROVED", commit_id=w.head())
    return w


def open_canary_prs(w: World) -> list[Any]:
    return [p for p in w.gh.pulls(w.deploy, state="open") if p.head.startswith("mlgate/canary/")]


def merge_and_tell(w: World, pr: Any) -> Any:
    """Merge a step PR on the fake and deliver the signed merge webhook; returns the delivery's info."""
    from tests.e2e.bot.deliveries import github_merged

    w.gh.merge_pr(w.deploy, pr.number)
    return w.bot.wait(w.bot.send_github("pull_request", github_merged(w.gh, w.deploy, pr.number)))[0]


def main_text(w: World) -> str:
    g = w.gh.repos[w.deploy].git
    return g.read(g.branch("main"), "prod/isvc.yaml").decode()


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.splitlines(), after.splitlines()
    import difflib

    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b).get_opcodes():
        if tag != "equal":
            out.append(("\n".join(a[i1:i2]).strip(), "\n".join(b[j1:j2]).strip()))
    return out


def canary_audit(w: World) -> list[dict[str, Any]]:
    return [a for a in w.bot.audit() if a.get("event") == "canary" and a.get("model") == w.model]


# --------------------------------------------------------------------------- scenarios


def test_promote_to_a_canary_environment_advances_step_by_step_and_moves_champion(cworld: World, exporter,  # noqa: F811
                                                                                   prometheus):  # noqa: F811
    w, m = cworld, cworld.model
    exporter.serve(m, "2", requests=500, error_ratio=0.01)
    exporter.serve(m, "1", requests=5000, error_ratio=0.01)
    wait_for_value(prometheus, f'sum(model_requests{{model="{m}",version="2"}})', 500)
    seed = main_text(w)

    info = w.promote("/promote to production", by="carol")
    assert info.status == "done" and "canary" in info.outcome and "started" in info.outcome, info
    steps = open_canary_prs(w)
    assert len(steps) == 1 and "mlgate-canary" in steps[0].labels and "at 10 % in production" in steps[0].title
    assert "### Canary:" in w.reply() and "awaiting merge" in w.reply()
    assert w.client.get_model_version_by_alias(m, "champion").version == "1"  # nothing moves before 100 %

    merged = []
    for percent in (10, 50, 100):
        pr = eventually(f"the {percent} % step PR", lambda: [p for p in open_canary_prs(w)
                                                            if f"at {percent} % in production" in p.title], w.bot)[0]
        before = main_text(w)
        done = merge_and_tell(w, pr)
        assert done.status == "done" and "canary" in done.outcome, done
        merged.append(pr)
        # each step changed only the canary's lines: the model URI and the traffic percentage
        for old, new in changed_lines(before, main_text(w)):
            assert "storageUri" in new or "canaryTrafficPercent" in new, (old, new)
    assert "promoted" in done.outcome, done.outcome  # the 100 % step going live promotes at once

    champion = w.client.get_model_version_by_alias(m, "champion")
    assert champion.version == "2" and champion.tags["mlgate.canary"] == "promoted"
    assert len(w.gh.pulls(w.deploy)) == 3  # one PR per step, nothing else
    assert f"s3://models/{m}/2" in main_text(w) and main_text(w) != seed
    final = eventually("the report saying promoted", lambda: "**promoted**" in w.reply() and w.reply(), w.bot)
    assert "| 3 | 100 % |" in final and "```mermaid" in final
    actions = [a["action"] for a in canary_audit(w)]
    assert actions[0] == "start" and actions.count("measure:advance") == 2 and actions[-1] == "promote", actions
    assert all(a["repo"] == w.repo or a["repo"] == w.deploy for a in canary_audit(w))


def test_rollback_at_a_step_writes_the_rollback(cworld: World, exporter, prometheus):  # noqa: F811
    w, m = cworld, cworld.model
    exporter.serve(m, "2", requests=5, error_ratio=0.0)  # 5 < min_samples 100: the step keeps waiting
    wait_for_value(prometheus, f'sum(model_requests{{model="{m}",version="2"}})', 5)
    seed = main_text(w)
    w.promote("/promote to production", by="carol")
    step1 = open_canary_prs(w)[0]
    merge_and_tell(w, step1)
    eventually("a measurement that waits for samples",
               lambda: any(a["action"] == "measure:wait" for a in canary_audit(w)), w.bot)

    refused = w.promote("/rollback", by="alice")  # write permission; production needs maintain
    assert "refused" in refused.outcome and "needs maintain or higher" in w.reply()

    info = w.promote("/rollback", by="carol")
    assert info.status == "done" and "rolling_back" in info.outcome, info
    rollback = eventually("the rollback PR", lambda: [p for p in open_canary_prs(w) if "roll back" in p.title], w.bot)[0]
    assert rollback.head.endswith("/rollback")
    done = merge_and_tell(w, rollback)
    assert "rolled_back" in done.outcome, done.outcome

    v2 = w.client.get_model_version(m, "2")
    assert v2.tags["mlgate.canary"] == "rolled_back" and "rolled back by carol" in v2.tags["mlgate.canary.reason"]
    assert w.client.get_model_version_by_alias(m, "champion").version == "1"
    # traffic is back on the primary: its URI, and the canary's share pinned to 0
    assert changed_lines(seed, main_text(w)) == [("", "canaryTrafficPercent: 0")]
    assert "**rolled back**" in w.reply()
    actions = [a["action"] for a in canary_audit(w)]
    assert "rollback" in actions and actions[-1] == "rolled_back", actions
    rb = [a for a in w.bot.audit() if a.get("command") == "/rollback" and a.get("model") == m]
    assert [a["allowed"] for a in rb] == [False, True] and rb[0]["actor"] == "alice"



def test_push_mode_commits_each_step_and_the_tick_drives_it_to_100(fakes, canary_bot, mlflow_client, prometheus,  # noqa: F811
                                                                   exporter):  # noqa: F811
    gh, _ = fakes
    errors_before = len(gh.errors)
    w = make_cworld(gh, canary_bot, mlflow_client, prometheus, mode="push", steps="[25, 100]")
    m = w.model
    exporter.serve(m, "2", requests=900, error_ratio=0.0)
    wait_for_value(prometheus, f'sum(model_requests{{model="{m}",version="2"}})', 900)
    g = gh.repos[w.deploy].git
    seed = g.branch("main")

    info = w.promote("/promote to production", by="carol")
    assert "canary" in info.outcome and "step 1 at 25 %" in info.outcome, info
    eventually("champion moved", lambda: w.client.get_model_version_by_alias(m, "champion").version == "2", w.bot)
    assert w.gh.pulls(w.deploy) == []  # push mode: no PR, one commit per step on the branch
    subjects = [g.commit_info(sha)["message"].splitlines()[0] for sha in g.log(seed, g.branch("main"))]
    assert sorted(subjects) == sorted([f"canary: {m} v2 at 25 % in production (step 1/2)",
                                       f"canary: {m} v2 at 100 % in production (step 2/2)"]), subjects
    eventually("the report saying promoted", lambda: "**promoted**" in w.reply(), w.bot)
    assert gh.errors[errors_before:] == []
