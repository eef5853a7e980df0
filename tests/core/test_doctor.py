"""mlgate doctor's pure part: statuses, the exit code, the text/JSON/Markdown renderings and the
decisions on plain forge answers (GitHub ``permissions``, GitLab access levels, git's stderr)."""

from __future__ import annotations

import json

import pytest

from mlgate.core import doctor as d
from mlgate.core.doctor import Check

OK1 = d.ok("config", "config .mlgate.yml is valid", "model wine")
FAIL1 = d.fail("env.staging.branch", "staging: branch main exists", "no branch 'main'", "push the branch")
UNK1 = d.unknown("tracking", "tracking server answers", "timed out", "run again")


@pytest.mark.parametrize("checks, code, status", [
    ([], 0, "ok"),
    ([OK1], 0, "ok"),
    ([OK1, UNK1], 3, "unknown"),
    ([OK1, FAIL1], 1, "fail"),
    ([UNK1, FAIL1, OK1], 1, "fail"),  # a failure wins over "cannot tell"
])
def test_exit_code_is_1_on_any_failure_3_when_only_unsure_else_0(checks, code, status):
    assert d.exit_code(checks) == code
    assert d.overall(checks) == status
    assert d.to_json(checks)["exit_code"] == code and d.to_json(checks)["status"] == status


def test_a_status_outside_the_three_is_refused():
    with pytest.raises(ValueError):
        Check("x", "x", "warn")


def test_text_reads_top_to_bottom_with_marks_and_the_fix_under_each_cross():
    text = d.render_text([OK1, FAIL1, UNK1, d.skipped("env.staging.file", "staging: file x exists", "branch")],
                         heading="mlgate doctor (.mlgate.yml)")
    lines = text.splitlines()
    assert lines[0] == "mlgate doctor (.mlgate.yml)"
    assert lines[1] == "✓ config .mlgate.yml is valid: model wine"
    assert lines[2] == "✗ staging: branch main exists: no branch 'main'"
    assert lines[3] == "    fix: push the branch"
    assert lines[4] == "? tracking server answers: timed out" and lines[5] == "    fix: run again"
    assert lines[6] == "? staging: file x exists: not checked: branch"  # no fix: the ✗ above has it
    assert lines[-1] == "1 ok, 1 failed, 2 unknown: not ready: fix the ✗ items"


def test_a_multi_line_detail_is_indented_under_its_check():
    c = d.fail("config", "config c.yml is valid", "c.yml:3:3: unknown key 'gatez'\nc.yml:6:12: not a number", "fix")
    assert d.render_text([c]).splitlines()[:3] == [
        "✗ config c.yml is valid: c.yml:3:3: unknown key 'gatez'", "    c.yml:6:12: not a number", "    fix: fix"]


def test_json_document_is_stable_and_complete():
    doc = d.to_json([OK1, FAIL1])
    assert list(doc) == ["schema_version", "status", "exit_code", "checks"]
    assert doc["schema_version"] == 1
    assert doc["checks"][1] == {"id": "env.staging.branch", "title": "staging: branch main exists", "status": "fail",
                                "detail": "no branch 'main'", "fix": "push the branch"}
    assert json.loads(json.dumps(doc)) == doc


def test_markdown_for_the_bot_escapes_html_and_table_pipes():
    md = d.render_markdown([OK1, d.fail("x", "a|b", "<script>", "do it")])
    assert "- ✓ config .mlgate.yml is valid: model wine" in md
    assert "- ✗ a\\|b: &lt;script><br>fix: do it" in md
    assert md.rstrip().endswith("not ready: fix the ✗ items")


@pytest.mark.parametrize("perms, expected", [
    ({"admin": False, "maintain": False, "push": True, "triage": True, "pull": True}, True),
    ({"admin": False, "push": False, "pull": True}, False),
    ({"admin": True, "push": False, "pull": True}, True),
    (None, None),
    ({}, None),
])
def test_github_push_permission_decides_whether_a_pr_can_be_opened(perms, expected):
    assert d.github_can_open_pr(perms) is expected


def test_github_app_installation_needs_contents_and_pull_requests_write():
    assert d.github_app_missing({"contents": "write", "pull_requests": "write", "metadata": "read"}) == []
    assert d.github_app_missing({"contents": "read", "pull_requests": "write"}) == ["contents: write"]
    assert d.github_app_missing(None) == ["contents: write", "pull_requests: write"]


@pytest.mark.parametrize("perms, level", [
    ({"project_access": {"access_level": 20, "notification_level": 3}, "group_access": None}, 20),
    ({"project_access": {"access_level": 10}, "group_access": {"access_level": 40}}, 40),
    ({"project_access": None, "group_access": None}, None),  # inherited access: GitLab shows nulls
    (None, None),
])
def test_gitlab_level_is_the_higher_of_project_and_group_access(perms, level):
    assert d.gitlab_level(perms) == level


def test_gitlab_level_names():
    assert d.gitlab_level_name(20) == "Reporter (20)" and d.gitlab_level_name(30) == "Developer (30)"


@pytest.mark.parametrize("stderr, status, fix_has", [
    ("ssh: Could not resolve hostname github.com: Name or service not known\nfatal: Could not read from remote "
     "repository.", "fail", "host name"),
    ("fatal: '/tmp/x.git' does not appear to be a git repository", "fail", "create the repository"),
    ("remote: Repository not found.\nfatal: repository 'https://github.com/acme/nope.git/' not found", "fail",
     "create the repository"),
    ("git@github.com: Permission denied (publickey).", "fail", "credentials"),
    ("fatal: unable to access 'https://git.example/x.git/': Failed to connect to git.example port 443: "
     "Connection refused", "fail", "start the git server"),
    ("fatal: unable to access 'https://x/': The requested URL returned error: 503", "unknown", "again"),
    ("git ls-remote timed out after 60 s", "unknown", "again"),
])
def test_git_failures_that_prove_a_wrong_wiring_fail_others_are_unknown(stderr, status, fix_has):
    assert d.git_failure_status(stderr) == status
    assert fix_has in d.git_failure_fix(stderr, "git@github.com:acme/deployments.git", ".mlgate.yml")


def test_the_doctor_comment_command_takes_no_arguments():
    from mlgate.core.commands import Command, CommandMistake, parse

    [cmd] = parse("/doctor")
    assert isinstance(cmd, Command) and cmd.name == "doctor"
    [bad] = parse("/doctor staging")
    assert isinstance(bad, CommandMistake) and "takes no arguments" in bad.reply()
    [typo] = parse("/docter")
    assert isinstance(typo, CommandMistake) and "did you mean /doctor" in typo.reply()
    [usage] = parse("/doctor --help")
    assert usage.name == "help" and usage.topic == "doctor"
