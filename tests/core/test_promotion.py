"""The typed promotion: one source for branch, title, body, commit message and trailers (issue 9).

Round trips are property tests over the names ``.mlgate.yml`` accepts (NAME_PATTERN). Trailer
cases follow git's own rules for ``git interpret-trailers`` (trailers are the last paragraph,
every line of it ``Key: value``), as git's t/t7513-interpret-trailers.sh tests them.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlgate.core.config import NAME_PATTERN, ALIAS_PATTERN, parse
from mlgate.core.promotion import (
    CanaryStep,
    parse_canary_branch,
    Promotion,
    Trigger,
    eligibility,
    gate_summary,
    gates_fingerprint,
    parse_branch,
    parse_hidden,
    parse_message,
    trailers,
)

names = st.from_regex(re.compile(NAME_PATTERN), fullmatch=True)
aliases = st.from_regex(re.compile(ALIAS_PATTERN), fullmatch=True)
versions = st.integers(min_value=1, max_value=10**6).map(str)
logins = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?", fullmatch=True)
text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(lambda s: s.strip())

triggers = st.builds(
    Trigger,
    kind=st.sampled_from(["cli", "ci", "comment", "canary", "registry", "alert"]),
    actor=st.none() | logins,
    repo=st.none() | st.from_regex(r"[a-z0-9-]{1,12}/[a-z0-9._-]{1,12}", fullmatch=True),
    number=st.none() | st.integers(min_value=1, max_value=10**6),
    forge=st.none() | st.sampled_from(["github", "gitlab"]),
    url=st.none() | st.from_regex(r"https://[a-z]{1,10}\.example/[a-z0-9/]{0,20}", fullmatch=True),
)
canary_steps = st.builds(
    CanaryStep, canary_id=st.integers(min_value=1, max_value=10**6),
    step=st.sampled_from(["1", "2", "3", "rollback"]), percent=st.integers(min_value=0, max_value=100),
    primary_version=versions, steps=st.integers(min_value=1, max_value=5),
    reason=st.sampled_from(["", "error ratio 0.5 > 0.05 for 2 checks"]),
)
promotions = st.builds(
    Promotion, model=names, version=versions, environment=names, alias=aliases,
    action=st.sampled_from(["promote", "rollback"]), trigger=triggers,
    gates=st.none() | st.sampled_from(["passed (3/3)", "passed (1/1)"]),
    run_id=st.none() | st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    model_uri=st.none() | st.from_regex(r"models:/[a-z]{1,8}/[0-9]{1,3}", fullmatch=True),
    links=st.lists(st.from_regex(r"\[run\]\(https://mlflow\.example/#/runs/[0-9a-f]{8}\)", fullmatch=True),
                   max_size=2).map(tuple),
    canary=st.none() | canary_steps,
)


@settings(max_examples=300, deadline=None)
@given(promotions)
def test_the_commit_message_parses_back_to_the_same_promotion(p):
    assert parse_message(p.message()) == p


@settings(max_examples=300, deadline=None)
@given(names, names, versions)
def test_the_branch_parses_back_to_model_environment_version(model, env, version):
    p = Promotion(model, version, env, "staging")
    assert p.branch == f"mlgate/promote/{model}/{env}/v{version}"
    assert parse_branch(p.branch) == (model, env, version)


@settings(max_examples=100, deadline=None)
@given(promotions)
def test_the_pr_body_carries_the_promotion_in_its_hidden_block(p):
    data = parse_hidden(p.body("| check | result |"))
    assert (data["model"], data["version"], data["environment"], data["alias"]) == (
        p.model, p.version, p.environment, p.alias)
    assert data["source_repo"] == p.trigger.repo and data["command"] == p.action


def test_the_message_reads_like_a_commit_and_ends_with_trailers():
    p = Promotion("wine", "3", "staging", "staging", gates="passed (2/2)", run_id="abc", model_uri="models:/wine/3",
                  trigger=Trigger("comment", actor="alice", repo="acme/wine", number=12, forge="github"))
    lines = p.message().splitlines()
    assert lines[0] == "Promote wine to version 3 in staging" and lines[1] == ""
    assert lines[2] == "mlgate promotes model version 3 of wine to staging (alias staging)." and lines[3] == ""
    assert lines[4:] == ["Model: wine", "Model-Version: 3", "Environment: staging", "Alias: staging",
                         "Action: promote", "Trigger: comment", "Requested-By: alice", "Source-Repo: acme/wine",
                         "Source-Number: 12", "Source-Forge: github", "Gates: passed (2/2)", "Source-Run: abc",
                         "Model-URI: models:/wine/3"]
    assert dict(trailers(p.message()))["Gates"] == "passed (2/2)"
    assert p.title == "Promote wine to version 3 in staging"
    assert Promotion("wine", "2", "production", "champion", action="rollback").title == \
        "Roll back wine to version 2 in production"


@pytest.mark.parametrize("message", [
    "fix typo",                                                         # no trailers at all
    "Model: wine\nModel-Version: 3\nEnvironment: staging\nAlias: staging",  # one paragraph: a subject, not trailers
    "promote\n\nModel: wine\nModel-Version: 3\nEnvironment: staging",    # no Alias trailer
    "promote\n\nModel: wine\nsome prose\nModel-Version: 3\nEnvironment: staging\nAlias: s",  # git: not a trailer block
    "canary: wine v3 at 10 %\n\nbody\n\nModel: wine\nModel-Version: 3\nEnvironment: prod\nAlias: champion\n"
    "Canary-Id: one\nCanary-Step: 1\nCanary-Percent: 10",               # a canary step whose id is no number
    "Merge pull request #4 from acme/mlgate/promote/wine/staging/v3",    # a merge commit's own message
])
def test_messages_that_are_not_promotions_parse_to_none(message):
    assert parse_message(message) is None


def test_trailers_survive_a_merge_tool_that_adds_a_paragraph_above_them():
    p = Promotion("wine", "3", "staging", "staging")
    squashed = "Promote wine to version 3 in staging (#7)\n\n* extra line from the squash\n\n" + \
        p.message().split("\n\n", 2)[2]
    assert parse_message(squashed) == p


@settings(max_examples=200, deadline=None)
@given(names, names, versions, canary_steps)
def test_a_canary_steps_branch_parses_back(model, env, version, step):
    p = Promotion(model, version, env, "champion", canary=step)
    assert parse_canary_branch(p.branch) == (model, env, step.canary_id, version, step.step)
    assert parse_branch(p.branch) is None and p.labels == ("mlgate-promotion", "mlgate-canary")


def test_canary_step_messages_keep_their_subjects_and_say_the_last_step():
    step = Promotion("wine", "3", "production", "champion", canary=CanaryStep(4, "3", 100, "2", steps=3))
    assert step.title == "canary: wine v3 at 100 % in production (step 3/3)"
    assert "This is the last step: v3 becomes the primary." in step.message()
    assert step.branch == "mlgate/canary/wine/production/c4-v3/step-3"
    back = Promotion("wine", "3", "production", "champion", canary=CanaryStep(4, "rollback", 0, "2", reason="errors"))
    assert back.title == "canary: roll back wine v3 in production" and back.branch.endswith("/c4-v3/rollback")
    assert "Merging it sends the traffic back to the primary" in back.body()


@pytest.mark.parametrize("branch", ["mlgate/promote/wine/staging/3", "mlgate/promote/wine/v3",
                                    "mlgate/promote/wine/staging/v3/x", "feature/promote", "", None,
                                    "mlgate/canary/wine/prod/c1-v3/step-1"])
def test_other_branches_are_not_promotion_branches(branch):
    assert parse_branch(branch) is None


# --------------------------------------------------------------------------- eligibility

CFG = parse("""
model: wine
validate:
  gates:
    - {metric: acc, min: 0.8}
environments:
  - name: staging
    gitops: {repository: ../deploy, path: isvc.yaml, target: {kind: kserve}}
  - name: production
    requires: staging
    gitops: {repository: ../deploy, path: isvc.yaml, target: {kind: kserve}}
""", "x.yml")
FP = gates_fingerprint(CFG)
PASSED = {"mlgate.gates": "passed", "mlgate.gates.fingerprint": FP, "mlgate.gate.acc": "passed (0.9)"}


def failing(**kw):
    return [c for c in eligibility("wine", "3", CFG.environment(kw.pop("env", "staging")), **kw) if not c.ok]


def test_a_passed_ready_version_held_by_the_required_environment_is_eligible():
    assert failing(status="READY", tags=PASSED, expected_fingerprint=FP, required_holder=None) == []
    assert failing(env="production", status="READY", tags=PASSED, expected_fingerprint=FP, required_holder="3") == []


@pytest.mark.parametrize("kw,name,words", [
    (dict(status="READY", tags={}), "metric gates", "no mlgate.gates tag"),
    (dict(status="READY", tags={**PASSED, "mlgate.gates": "failed", "mlgate.gate.acc": "failed (0.7)"}),
     "metric gates", "its gates failed (acc)"),
    (dict(status="READY", tags={**PASSED, "mlgate.gates.fingerprint": "0" * 16}), "metric gates",
     "validate.gates changed since it was validated"),
    (dict(status="READY", tags={k: v for k, v in PASSED.items() if k != "mlgate.gates.fingerprint"}),
     "metric gates", "records no gates fingerprint"),
    (dict(status="PENDING_REGISTRATION", tags=PASSED), "registration", "not READY"),
    (dict(env="production", status="READY", tags=PASSED, required_holder="2"), "requires",
     "production requires staging first: staging holds version 2, not version 3"),
    (dict(env="production", status="READY", tags=PASSED, required_holder=None), "requires", "holds no version"),
])
def test_each_reason_to_refuse_is_named_with_what_to_do(kw, name, words):
    kw.setdefault("expected_fingerprint", FP)
    kw.setdefault("required_holder", None)
    bad = failing(**kw)
    assert [c.name for c in bad] == [name] and words in bad[0].detail, bad


def test_gate_summary_counts_passed_gates():
    assert gate_summary(PASSED) == "passed (1/1)"
    assert gate_summary({"mlgate.gates": "failed", "mlgate.gate.a": "failed (1)", "mlgate.gate.b": "passed (2)"}) \
        == "failed (1/2)"
