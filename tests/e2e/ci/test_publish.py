"""``mlgate report``: the pure decisions (targets, bodies, dotenv, verdicts) and the publishing
against fake GitHub / GitLab servers that check every request against the forges' API
descriptions (see tests/e2e/ci/ci_fakes.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import stamina

from mlgate.core.ci_report import (
    GitHubTarget,
    GitLabTarget,
    NoTarget,
    comment_body,
    detect_target,
    dotenv_text,
    find_comment,
    outputs,
    report_from_dict,
    retry_after,
    verdict_lines,
)
from mlgate.core.errors import InfraError, UsageError
from mlgate.core.report import COMMENT_MARKER, render_markdown

from ci_fakes import FakeGitHub, FakeGitLab

VALIDATE_JSON = {
    "model": "wine-classifier",
    "candidate_version": "2",
    "candidate_run": "abc123",
    "champion_version": "1",
    "source": "logged",
    "evaluation_data": None,
    "passed": False,
    "gates": [
        {"metric": "accuracy_score", "direction": "higher", "candidate": 0.9815, "champion": 0.97, "delta": 0.0115,
         "threshold": ">= 0.999", "passed": False,
         "message": "accuracy_score 0.9815 is below the minimum 0.999 by 0.0175"},
        {"metric": "log_loss", "direction": "lower", "candidate": 0.09, "champion": 0.1, "delta": -0.01,
         "threshold": "<= 1", "passed": True, "message": "log_loss 0.09 passes"},
    ],
    "notes": ["Numbers: metrics logged by each version's training run."],
}

GH_ENV = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request", "GITHUB_REPOSITORY": "acme/wine-model",
          "GITHUB_API_URL": "https://api.github.com/", "GITHUB_TOKEN": "t"}
GL_ENV = {"GITLAB_CI": "true", "CI_MERGE_REQUEST_IID": "3", "CI_PROJECT_ID": "42",
          "CI_SERVER_URL": "https://gitlab.example.com", "MLGATE_GITLAB_TOKEN": "g",
          "CI_PROJECT_URL": "https://gitlab.example.com/acme/wine-model"}


# --------------------------------------------------------------------------- pure core


@pytest.mark.parametrize(
    ("env", "event", "forge", "expected"),
    [
        (GH_ENV, {"pull_request": {"number": 7}}, "auto", GitHubTarget("https://api.github.com", "acme/wine-model", 7, "t")),
        (GH_ENV, {"issue": {"number": 8, "pull_request": {"url": "u"}}}, "auto",
         GitHubTarget("https://api.github.com", "acme/wine-model", 8, "t")),
        ({**GH_ENV, "MLGATE_GITHUB_TOKEN": "m"}, {"pull_request": {"number": 7}}, "github",
         GitHubTarget("https://api.github.com", "acme/wine-model", 7, "m")),
        (GL_ENV, None, "auto", GitLabTarget("https://gitlab.example.com", "42", 3, "g",
                                            "https://gitlab.example.com/acme/wine-model")),
        # gitlab-ci-local and older runners: GITLAB_CI unset, the template says --forge gitlab
        ({k: v for k, v in GL_ENV.items() if k != "GITLAB_CI"} | {"CI_SERVER_URL": "",
                                                                   "CI_API_V4_URL": "http://h:1/api/v4"},
         None, "gitlab", GitLabTarget("http://h:1", "42", 3, "g", "https://gitlab.example.com/acme/wine-model")),
    ],
)
def test_detect_target(env, event, forge, expected) -> None:
    assert detect_target(env, event, forge) == expected


@pytest.mark.parametrize(
    ("env", "event", "forge", "reason"),
    [
        ({**GH_ENV, "GITHUB_EVENT_NAME": "push"}, {"ref": "refs/heads/main"}, "auto", "not a pull request (GitHub event 'push')"),
        ({**GH_ENV, "GITHUB_TOKEN": ""}, {"pull_request": {"number": 7}}, "auto", "no token"),
        ({k: v for k, v in GL_ENV.items() if k != "CI_MERGE_REQUEST_IID"} | {"CI_PIPELINE_SOURCE": "push"}, None,
         "auto", "not a merge request pipeline (source 'push')"),
        ({**GL_ENV, "MLGATE_GITLAB_TOKEN": ""}, None, "auto", "no token"),
        ({}, None, "auto", "not running in GitHub Actions or GitLab CI"),
    ],
)
def test_no_target_says_why(env, event, forge, reason) -> None:
    target = detect_target(env, event, forge)
    assert isinstance(target, NoTarget) and target.reason.startswith(reason)
    for secret in ("g", "t"):
        assert f"'{secret}'" not in target.reason


def test_comment_body_and_finding_it_again() -> None:
    body = comment_body("### table\n")
    assert body.startswith(COMMENT_MARKER + "\n") and body.endswith("### table\n")
    keyed = comment_body("### other\n", key="models/b/.mlgate.yml")
    comments = [(1, "LGTM"), (2, keyed), (3, body + " edited"), (4, body)]
    assert find_comment(comments) == 3  # the oldest unkeyed one
    assert find_comment(comments, key="models/b/.mlgate.yml") == 2
    assert find_comment(comments, key="models/a/.mlgate.yml") is None
    assert find_comment([(1, "mentions mlgate gates")]) is None
    # a key cannot close the hidden comment early
    assert comment_body("x", key="a --> b").split("\n")[1] == "<!-- mlgate:key=a_--__b -->"


def test_report_round_trip_and_chart() -> None:
    report = report_from_dict(VALIDATE_JSON)
    assert not report.passed and [r.metric for r in report.failed] == ["accuracy_score"]
    md = render_markdown(report, chart=True)
    assert "below the minimum 0.999 by 0.0175" in md and "xychart-beta" in md
    with pytest.raises(ValueError, match="missing 'gates'"):
        report_from_dict({"model": "m", "candidate_version": "1"})


def test_outputs_and_dotenv() -> None:
    assert outputs(VALIDATE_JSON) == {"gates_passed": "false", "model_version": "2", "model": "wine-classifier",
                                      "champion_version": "1"}
    assert outputs({"model": "m", "run_id": "r1", "model_version": "3", "experiment_id": "0"}) == {
        "run_id": "r1", "model_version": "3", "model": "m"}
    assert outputs({"model": "m", "version": "3", "environment": "staging", "alias": "staging",
                    "commit": "abc", "url": None}) == {
        "model_version": "3", "model": "m", "environment": "staging", "promotion_commit": "abc", "promotion_url": ""}
    assert dotenv_text({"a": "1", "b": "two\nlines"}) == "a=1\nb=two lines\n"


def test_verdict_lines_say_which_gate_and_by_how_much() -> None:
    lines = verdict_lines(report_from_dict(VALIDATE_JSON))
    assert lines[0] == "mlgate: gate failed: accuracy_score: accuracy_score 0.9815 is below the minimum 0.999 by 0.0175"
    assert lines[-1] == "mlgate: 1 of 2 gates failed for wine-classifier v2"
    passed = dict(VALIDATE_JSON, passed=True, gates=[dict(VALIDATE_JSON["gates"][1])])
    assert verdict_lines(report_from_dict(passed)) == ["mlgate: every gate passed for wine-classifier v2"]


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [(502, {}, 0.0), (503, {"Retry-After": "3"}, 3.0), (429, {"retry-after": "7"}, 7.0),
     (403, {"Retry-After": "30"}, 30.0), (403, {"x-ratelimit-remaining": "0"}, 60.0),
     (403, {}, None), (404, {}, None), (422, {}, None), (200, {}, None)],
)
def test_retry_after(status, headers, expected) -> None:
    assert retry_after(status, headers) == expected


# --------------------------------------------------------------------------- GitHub


@pytest.fixture
def github():
    server = FakeGitHub()
    yield server
    server.close()
    assert server.problems == []


@pytest.fixture
def gitlab():
    server = FakeGitLab()
    yield server
    server.close()
    assert server.problems == []


@pytest.fixture
def no_waits():
    stamina.set_testing(True, attempts=5)
    yield
    stamina.set_testing(False)


def test_github_comment_is_created_once_then_updated_across_pages(github, no_waits) -> None:
    from mlgate.cli.reportcmd import publish_github

    for i in range(120):  # two pages of other comments before ours
        github.add_comment(7, f"comment {i}")
    target = GitHubTarget(github.url, "acme/wine-model", 7, github.token)
    assert publish_github(target, comment_body("first"), None)[0] == "created"
    action, url = publish_github(target, comment_body("second"), None)
    assert action == "updated" and url.endswith(f"#issuecomment-{github.comments[7][-1]['id']}")
    ours = [c for c in github.comments[7] if COMMENT_MARKER in c["body"]]
    assert len(ours) == 1 and ours[0]["body"].endswith("second\n")
    assert ("GET", "/repos/acme/wine-model/issues/7/comments?per_page=100&page=2") in github.requests


def test_github_retries_5xx_and_429_then_succeeds(github, no_waits) -> None:
    from mlgate.cli.reportcmd import publish_github

    github.fail_next = [(502, {}), (429, {"Retry-After": "1"})]
    target = GitHubTarget(github.url, "acme/wine-model", 7, github.token)
    assert publish_github(target, comment_body("x"), None)[0] == "created"
    assert len(github.comments[7]) == 1


def test_github_gives_up_with_an_infrastructure_error(github, no_waits) -> None:
    from mlgate.cli.reportcmd import publish_github

    github.fail_next = [(503, {})] * 5
    with pytest.raises(InfraError, match="503 after 5 attempts"):
        publish_github(GitHubTarget(github.url, "acme/wine-model", 7, github.token), comment_body("x"), None)
    assert github.comments == {}


def test_github_refused_token_is_a_usage_error_without_the_token(github, no_waits) -> None:
    from mlgate.cli.reportcmd import publish_github

    with pytest.raises(UsageError) as err:
        publish_github(GitHubTarget(github.url, "acme/wine-model", 7, "ghs_wrong_token"), comment_body("x"), None)
    assert "401 Bad credentials" in str(err.value) and "ghs_wrong_token" not in str(err.value)


def test_the_fake_github_rejects_what_github_rejects(github) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {github.token}"}
    bad = httpx.post(f"{github.url}/repos/acme/wine-model/issues/7/comments", json={"text": "x"}, headers=headers)
    assert bad.status_code == 422
    assert any("invalid request" in p for p in github.problems)
    github.problems.clear()


# --------------------------------------------------------------------------- GitLab


def test_gitlab_note_is_created_once_then_updated(gitlab) -> None:
    from mlgate.cli.reportcmd import publish_gitlab

    for i in range(130):
        gitlab.add_note(3, f"note {i}", system=i % 2 == 0)
    target = GitLabTarget(gitlab.url, "42", 3, gitlab.token, "https://gitlab.example.com/acme/wine-model")
    assert publish_gitlab(target, comment_body("first"), None)[0] == "created"
    action, url = publish_gitlab(target, comment_body("second"), None)
    ours = [n for n in gitlab.notes[3] if COMMENT_MARKER in n["body"]]
    assert len(ours) == 1 and ours[0]["body"].endswith("second\n")
    assert action == "updated" and url == f"https://gitlab.example.com/acme/wine-model/-/merge_requests/3#note_{ours[0]['id']}"


def test_gitlab_retries_transient_errors(gitlab) -> None:
    from mlgate.cli.reportcmd import publish_gitlab

    gitlab.fail_next = [(502, {}), (429, {"Retry-After": "0"})]
    assert publish_gitlab(GitLabTarget(gitlab.url, "42", 3, gitlab.token), comment_body("x"), None)[0] == "created"


def test_gitlab_note_needs_no_bot_extra(gitlab, tmp_path: Path) -> None:
    """A CI job's base install has no python-gitlab (the bot extra's): the note goes out over httpx."""
    code = ("import sys; sys.modules['gitlab'] = sys.modules['github'] = None\n"
            "from mlgate.core.ci_report import GitLabTarget, comment_body\n"
            "from mlgate.edge.forges.ci_comments import publish_gitlab\n"
            "print(publish_gitlab(GitLabTarget(sys.argv[1], '42', 3, sys.argv[2]), comment_body('x'), None)[0])\n")
    proc = subprocess.run([sys.executable, "-c", code, gitlab.url, gitlab.token], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, "created\n"), proc.stderr[-2000:]
    assert len(gitlab.notes[3]) == 1


def test_gitlab_refused_token(gitlab) -> None:
    from mlgate.cli.reportcmd import publish_gitlab

    with pytest.raises(UsageError, match="401") as err:
        publish_gitlab(GitLabTarget(gitlab.url, "42", 3, "glpat-wrong"), comment_body("x"), None)
    assert "glpat-wrong" not in str(err.value)


# --------------------------------------------------------------------------- the command


def _mlgate(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_", "CI_", "MLGATE_"))}
    return subprocess.run([str(Path(sys.executable).parent / "mlgate"), *args], env={**base, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_command_publishes_from_json_with_a_chart(github, tmp_path: Path) -> None:
    (tmp_path / "gates.json").write_text(json.dumps(VALIDATE_JSON), encoding="utf-8")
    (tmp_path / "event.json").write_text(json.dumps({"pull_request": {"number": 7}}), encoding="utf-8")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(tmp_path / "event.json"),
           "GITHUB_REPOSITORY": "acme/wine-model", "GITHUB_API_URL": github.url, "GITHUB_TOKEN": github.token}
    proc = _mlgate(["report", "publish", "--json", "gates.json"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "created the gate report on GitHub pull request acme/wine-model#7" in proc.stderr
    body = github.comments[7][0]["body"]
    assert "below the minimum 0.999 by 0.0175" in body and "```mermaid\nxychart-beta" in body
    assert github.token not in proc.stdout + proc.stderr


def test_command_does_nothing_outside_a_pull_request(tmp_path: Path) -> None:
    (tmp_path / "r.md").write_text("table", encoding="utf-8")
    proc = _mlgate(["report", "publish", "--report", "r.md"], {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push"},
                   tmp_path)
    assert proc.returncode == 0 and proc.stderr.strip() == (
        "mlgate report publish: not a pull request (GitHub event 'push'): nothing to publish")


def test_command_dotenv_and_check(tmp_path: Path) -> None:
    (tmp_path / "gates.json").write_text(json.dumps(VALIDATE_JSON), encoding="utf-8")
    proc = _mlgate(["report", "dotenv", "--json", "gates.json"], {}, tmp_path)
    assert proc.stdout == "gates_passed=false\nmodel_version=2\nmodel=wine-classifier\nchampion_version=1\n"
    proc = _mlgate(["report", "check", "--json", "gates.json"], {}, tmp_path)
    assert proc.returncode == 1
    assert "mlgate: gate failed: accuracy_score: accuracy_score 0.9815 is below the minimum 0.999 by 0.0175" in proc.stderr
    proc = _mlgate(["report", "check", "--json", "missing.json"], {}, tmp_path)
    assert proc.returncode == 2 and "missing.json: file not found" in proc.stderr and "Traceback" not in proc.stderr
