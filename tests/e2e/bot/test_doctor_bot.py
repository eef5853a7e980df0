"""Issue 11: the bot runs ``mlgate doctor``'s checks. ``/doctor`` on a pull request replies with the
list for the default branch's ``.mlgate.yml`` (GitOps repositories through the bot's own forge
client, tracking server of bot.yml), reading only; at start-up the bot logs one ``doctor`` line per
check of its own settings (database, tracking server, GitHub, GitLab).

Signed deliveries → ``mlgate bot serve`` → fake GitHub (OpenAPI-checked) and a real MLflow server."""

from __future__ import annotations

import json

import pytest

from tests.e2e.bot.conftest import BOT, World

pytestmark = pytest.mark.slow


def test_doctor_replies_with_the_checks_and_a_fix_for_a_token_that_cannot_write(world: World, mlflow_server):
    w = world
    before = len(w.gh.requests)
    info = w.promote("/doctor", by="dave")  # read only: anyone who may comment may ask
    assert info.status == "done" and info.outcome == "doctor: ready to promote (0 failed)", info
    reply = w.reply()
    assert "**mlgate** · doctor: ready to promote" in reply
    assert "- ✓ config .mlgate.yml (default branch main) is valid" in reply
    assert f"- ✓ tracking server answers: {mlflow_server}: MLflow 3." in reply
    assert f"- ✓ registered model {w.model} exists: yes" in reply
    assert f"- ✓ staging: the GitHub token may open a promotion PR: permissions.push: true on {w.deploy}" in reply
    assert "- ✓ production: target kserve resolves in production/isvc.yaml" in reply
    # reading only: the one write is the reply on the source PR
    writes = [r for r in w.gh.requests[before:] if r[0] != "GET"]
    assert writes and all(r[1].startswith(f"/repos/{w.repo}/issues/") for r in writes), writes

    w.gh.set_permission(w.deploy, BOT, "read")
    w.gh.commit(w.deploy, "main", {"production/isvc.yaml": None}, message="someone removed production")
    info = w.promote("/doctor", by="dave")
    assert info.outcome == "doctor: not ready (3 failed)", info.outcome
    reply = w.reply()
    assert "**mlgate** · doctor: not ready" in reply
    assert f"- ✗ staging: the GitHub token may open a promotion PR: permissions.push: false on {w.deploy}" in reply
    assert f"fix: give the token's account (or the GitHub App installation) write access to {w.deploy}" in reply
    assert "- ✗ production: file production/isvc.yaml exists" in reply and "fix: commit the manifest there" in reply
    assert "- ? production: target kserve resolves in production/isvc.yaml: not checked" in reply
    assert w.promotion_prs() == []
    audit = [a for a in w.bot.audit() if a.get("command") == "/doctor" and a.get("repo") == w.repo]
    assert [a["outcome"] for a in audit] == ["doctor: ready to promote", "doctor: not ready"]


def test_doctor_takes_no_arguments_and_a_typo_gets_did_you_mean(world: World):
    info = world.promote("/doctor now", by="dave")
    assert "usage error" in info.outcome and "/doctor takes no arguments" in world.reply()
    world.promote("/docter", by="dave")
    assert "did you mean /doctor" in world.reply()


def test_the_bot_logs_its_own_checks_at_start_up(world: World, mlflow_server):
    def lines() -> dict[str, dict]:
        out = {}
        for line in world.bot.log.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "doctor":
                out[rec["check"]] = rec
        return out

    from tests.e2e.bot.conftest import eventually

    got = eventually("the start-up doctor lines", lambda: (l if len(l := lines()) >= 4 else None), world.bot)
    assert {k: v["status"] for k, v in got.items()} == {
        "bot.database": "ok", "bot.tracking": "ok", "bot.github": "ok", "bot.gitlab": "ok"}
    assert got["bot.github"]["detail"] == f"token of {BOT}" and got["bot.gitlab"]["detail"] == f"token of {BOT}"
    assert got["bot.tracking"]["detail"].startswith(f"{mlflow_server}: MLflow 3.")
    assert all(v["level"] == "info" for v in got.values())
    assert [e for e in world.gh.errors if e.startswith("GET /user")] == [], "the fake's answer to GET /user is invalid"


def test_the_bot_checks_a_github_app_at_start_up(tmp_path):
    """With App credentials the start-up check reads ``GET /app`` with the App's JWT (the fake checks
    the JWT against the App's public key and the answer against GitHub's description)."""
    from types import SimpleNamespace

    from mlgate.bot.handlers.doctor import startup_checks
    from mlgate.core.redact import Redactor
    from tests.fakes.github_server import FakeGitHub, app_keypair

    private, public = app_keypair()
    with FakeGitHub(tmp_path, app=(42, public), app_slug="acme-mlgate") as gh:
        store = SimpleNamespace(ping=lambda: None)
        settings = SimpleNamespace(github_api_url=gh.url, github_app_id=42, github_private_key=private,
                                   github_token=None, gitlab_token=None, gitlab_url="", tracking_uri=None,
                                   safe_database_url=lambda: "sqlite:///bot.db",
                                   redactor=lambda env: Redactor([private]))
        checks = {c.id: c for c in startup_checks(settings, store, {})}
        assert checks["bot.github"].status == "ok" and checks["bot.github"].detail == "GitHub App acme-mlgate"
        wrong, _ = app_keypair()  # a key that is not the App's: the JWT is refused
        settings.github_private_key = wrong
        checks = {c.id: c for c in startup_checks(settings, store, {})}
        assert checks["bot.github"].status == "fail" and "401" in checks["bot.github"].detail
        assert gh.errors == [], gh.errors


def test_a_remote_that_fails_at_start_up_is_a_warning_and_the_bot_serves(fakes, tmp_path):
    from tests.conftest import free_port
    from tests.e2e.bot.conftest import eventually, start_bot, stop_bot

    _, gl = fakes
    dead_github, dead_mlflow = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    b = start_bot(tmp_path / "bot", dead_github, gl.url, dead_mlflow)  # start_bot waits for /healthz: it serves
    try:
        def doctor_lines() -> dict[str, dict] | None:
            out = {}
            for line in b.log.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("event") == "doctor":
                    out[rec["check"]] = rec
            return out if len(out) >= 4 else None

        got = eventually("the start-up doctor lines", doctor_lines, b, timeout=90)
        assert {k: (v["status"], v["level"]) for k, v in got.items()} == {
            "bot.database": ("ok", "info"), "bot.gitlab": ("ok", "info"),
            "bot.github": ("fail", "warning"), "bot.tracking": ("fail", "warning")}
        assert "unreachable" in got["bot.github"]["detail"] and "github_api_url" in got["bot.github"]["fix"]
        assert got["bot.tracking"]["fix"] == "check tracking_uri in bot.yml and the server"
        assert b.proc.poll() is None
    finally:
        stop_bot(b)
