"""Registry-driven promotion and protected aliases (issue 13), end to end: the real ``mlflow server``
(tests/conftest.py, started with MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS and MLFLOW_WEBHOOK_ALLOWED_SCHEMES so
that it may call a loopback http address) sends its own signed webhooks to ``mlgate bot serve``, which
opens promotion PRs/MRs on the fake GitHub and GitLab and puts hand-moved aliases back.

The MLflow server is the one every test shares: this module's webhook, registered with
``mlgate bot register-mlflow-webhook`` against this module's bot, receives the registry events of
every test running meanwhile. That is harmless and tested as such: the bot acts only on models a
repository governs (bot.yml ``models:`` or the version's ``mlgate.source_*`` tags, unique names per
test here) and answers the others "ignored". The webhook is deleted when the module ends. A dedicated
MLflow server would cost another 10-28 s of start-up on a 2-core machine for no extra isolation.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from typing import Any

import httpx
import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from tests.e2e.bot.conftest import BOT, GH_TOKEN, ISVC, VENV_BIN, eventually, mlgate_yml, start_bot, stop_bot

pytestmark = pytest.mark.slow

MLFLOW_SECRET = "e2e-mlflow-webhook-secret-7Hk"
GL_MODEL = f"gl-fraud-{uuid.uuid4().hex[:6]}"  # governed through bot.yml models:
GL_REPO = f"grp/model-{GL_MODEL[-6:]}"


@pytest.fixture(scope="module")
def mbot(fakes, mlflow_server, mlflow_client, tmp_path_factory):
    """A bot with an MLflow webhook secret, and the webhook that points the shared MLflow server at it."""
    gh, gl = fakes
    work = tmp_path_factory.mktemp("registry-bot")
    b = start_bot(work, gh.url, gl.url, mlflow_server,
                  extra_yaml=f"reconcile_interval_seconds: 0\nmodels:\n  {GL_MODEL}: gitlab:{GL_REPO}\n"
                             "source_repositories: ['github:acme/*']\n",
                  extra_env={"MLGATE_MLFLOW_WEBHOOK_SECRET": MLFLOW_SECRET})
    env = {"MLGATE_MLFLOW_WEBHOOK_SECRET": MLFLOW_SECRET, "PATH": str(VENV_BIN)}
    args = [str(VENV_BIN / "mlgate"), "bot", "register-mlflow-webhook", "--url", f"{b.url}/webhooks/mlflow",
            "--tracking-uri", mlflow_server]
    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    hooks = [w for w in mlflow_client.list_webhooks() if w.url == f"{b.url}/webhooks/mlflow"]
    assert "created" in first.stdout and "updated" in again.stdout and len(hooks) == 1  # idempotent
    assert sorted(str(e) for e in hooks[0].events) == [
        "model_version.created", "model_version_alias.created", "model_version_alias.deleted", "model_version_tag.set"]
    time.sleep(1.2)  # MLFLOW_WEBHOOK_CACHE_TTL=1: the server's cached webhook list expires
    yield b
    mlflow_client.delete_webhook(hooks[0].webhook_id)
    stop_bot(b, (MLFLOW_SECRET,))


def deliveries_for(bot, model: str, event: str) -> list[Any]:
    """The bot's stored MLflow deliveries of ``event`` about ``model`` (oldest first)."""
    store = bot.store()
    try:
        out = []
        for info in store.list_deliveries(limit=5000):
            if info.forge != "mlflow" or info.event != event:
                continue
            d = store.load(info.id)
            if d is not None and d.payload.get("data", {}).get("name") == model:
                out.append(store.get(info.id))
        return sorted(out, key=lambda i: i.received_at)
    finally:
        store.close()


def handled(bot, model: str, event: str, count: int = 1, match: str = "") -> list[Any]:
    """Wait until ``count`` deliveries of ``event`` about ``model`` (whose outcome holds ``match``) are done."""
    def done() -> list[Any]:
        got = [i for i in deliveries_for(bot, model, event) if i.status in ("done", "failed")
               and match in (i.outcome or "")]
        return got if len(got) >= count else []
    return eventually(f"{count} {event} deliveries about {model}", done, bot, timeout=60)


def new_world(gh, client, *, protect: bool = True, trigger: str = "{alias: challenger}") -> dict[str, Any]:
    """A model repository whose staging promotes on the challenger alias, its GitOps repository, and
    one version tagged as ``mlgate train`` tags it in GitHub Actions (mlgate.source_forge/_repo)."""
    from mlgate.core.config import parse
    from mlgate.core.promotion import gates_fingerprint

    n = uuid.uuid4().hex[:6]
    model, repo, deploy = f"fraud-{n}", f"acme/fraud-{n}", f"acme/fraud-deploy-{n}"
    yml = mlgate_yml(model, deploy, extra_staging=f"    trigger: {trigger}\n")
    if not protect:
        yml += "protect_aliases: false\n"
    gh.add_repo(deploy, {"staging/isvc.yaml": ISVC.format(name=model), "production/isvc.yaml": ISVC.format(name=model)})
    gh.add_repo(repo, {".mlgate.yml": yml})
    gh.set_permission(deploy, BOT, "write")
    client.create_registered_model(model)
    return {"model": model, "repo": repo, "deploy": deploy, "fingerprint": gates_fingerprint(parse(yml)), "yml": yml}


def register(client, w: dict[str, Any], gates: str = "passed", forge: str | None = "github") -> str:
    tags = {"mlgate.git_commit": uuid.uuid4().hex}
    if forge:  # as mlgate train tags a version in CI; without them no bot knows the model's repository
        tags.update({"mlgate.source_forge": forge, "mlgate.source_repo": w["repo"]})
    if gates:
        tags.update({"mlgate.gates": gates, "mlgate.gates.fingerprint": w["fingerprint"]})
        if gates == "failed":
            tags["mlgate.gate.accuracy"] = "failed: 0.71 < 0.9"
    mv = client.create_model_version(w["model"], source=f"s3://models/{w['model']}/{uuid.uuid4().hex[:8]}", tags=tags)
    return str(mv.version)


def tags_of(client, model: str, version: str) -> dict[str, str]:
    return dict(client.get_model_version(model, version).tags)


def test_challenger_on_a_passed_version_opens_one_promotion_pr_and_a_redelivery_does_nothing(mbot, fakes, mlflow_client):
    gh, _ = fakes
    w = new_world(gh, mlflow_client)
    v = register(mlflow_client, w)
    mlflow_client.set_registered_model_alias(w["model"], "challenger", v)
    [info] = handled(mbot, w["model"], "model_version_alias.created")
    assert "staging: promotion PR opened" in info.outcome, info
    [pr] = gh.pulls(w["deploy"])
    assert pr.head == f"mlgate/promote/{w['model']}/staging/v{v}"
    assert "alias 'challenger' set on" in pr.body and "| metric gates | ✅ |" in pr.body, pr.body
    assert "do not name the user" in pr.body and "by a registry event" in pr.body
    g = gh.repos[w["deploy"]].git
    assert f"s3://models/{w['model']}/" in g.read(g.branch(pr.head), "staging/isvc.yaml").decode()
    assert tags_of(mlflow_client, w["model"], v)["mlgate.requested.staging"].endswith(f"/pull/{pr.number}")
    records = [r for r in mbot.audit() if r.get("model") == w["model"]]
    assert [r["outcome"] for r in records] == ["promotion PR opened"] and records[0]["forge"] == "mlflow"

    # MLflow retries a 429/5xx with the same delivery id, timestamp and body: replay it byte for byte
    store = mbot.store()
    saved = store.load(info.id)
    store.close()
    body = json.dumps(saved.payload)  # MLflow's own json.dumps of the payload, as stored
    ts = saved.headers["x-mlflow-timestamp"]
    r = httpx.post(f"{mbot.url}/webhooks/mlflow", content=body.encode(), headers={
        "Content-Type": "application/json", "X-MLflow-Delivery-Id": info.id, "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": _generate_hmac_signature(MLFLOW_SECRET, info.id, ts, body)})
    assert r.status_code == 202 and r.headers["x-mlgate-status"] == "duplicate"
    time.sleep(1.0)  # a second run would open or update a PR and write a record: give it the chance
    assert len(gh.pulls(w["deploy"])) == 1
    assert len([x for x in mbot.audit() if x.get("model") == w["model"]]) == 1
    assert len(deliveries_for(mbot, w["model"], "model_version_alias.created")) == 1


def test_tags_naming_a_repository_source_repositories_does_not_allow_open_nothing(mbot, fakes, mlflow_client):
    # anyone who may tag a version in MLflow can write mlgate.source_repo: a repository outside
    # bot.yml source_repositories (github:acme/*) is never read as the model's policy
    gh, _ = fakes
    w = new_world(gh, mlflow_client)
    w["repo"] = f"mallory/{w['model']}"  # a policy of its own, with the same model and trigger
    gh.add_repo(w["repo"], {".mlgate.yml": w["yml"]})
    v = register(mlflow_client, w)
    mlflow_client.set_registered_model_alias(w["model"], "challenger", v)
    [d] = handled(mbot, w["model"], "model_version_alias.created")
    assert d.outcome == (f"ignored: the version's tags name github:{w['repo']}, which bot.yml source_repositories "
                         "does not allow (add the model to models: in bot.yml, or the repository to "
                         "source_repositories)"), d
    assert gh.pulls(w["deploy"]) == [] and "mlgate.requested.staging" not in tags_of(mlflow_client, w["model"], v)


def test_a_tag_trigger_opens_the_promotion_pr_when_the_tag_is_set(mbot, fakes, mlflow_client):
    gh, _ = fakes
    w = new_world(gh, mlflow_client, trigger="{tag: {key: deploy, value: staging}}")
    v = register(mlflow_client, w)
    mlflow_client.set_model_version_tag(w["model"], v, "deploy", "production")  # another value: no trigger
    first = handled(mbot, w["model"], "model_version_tag.set", match="nothing to do")
    assert gh.pulls(w["deploy"]) == [] and "no trigger" in first[0].outcome
    mlflow_client.set_model_version_tag(w["model"], v, "deploy", "staging")
    handled(mbot, w["model"], "model_version_tag.set", match="promotion PR opened")
    [pr] = gh.pulls(w["deploy"])
    assert pr.head == f"mlgate/promote/{w['model']}/staging/v{v}" and "tag deploy='staging' set on" in pr.body


def test_challenger_on_a_failed_version_opens_nothing_and_tags_the_refusal(mbot, fakes, mlflow_client):
    gh, _ = fakes
    w = new_world(gh, mlflow_client)
    v = register(mlflow_client, w, gates="failed")
    mlflow_client.set_registered_model_alias(w["model"], "challenger", v)
    [info] = handled(mbot, w["model"], "model_version_alias.created")
    assert "refused" in info.outcome, info
    assert gh.pulls(w["deploy"]) == []
    refused = tags_of(mlflow_client, w["model"], v)["mlgate.refused.staging"]
    assert refused.startswith("not promoted to staging:") and "accuracy" in refused
    [rec] = [r for r in mbot.audit() if r.get("model") == w["model"]]
    assert rec["outcome"] == "refused" and rec["allowed"] is False and "accuracy" in rec["reasons"][0]
    # the refusal tag comes back as a tag event: acknowledged, nothing more
    handled(mbot, w["model"], "model_version_tag.set", match="written by mlgate")


def deploy_to_production(gh, client, w: dict[str, Any], version: str) -> None:
    """Git deploys ``version`` to production (a commit of its storage URI), and champion holds it."""
    source = client.get_model_version(w["model"], version).source
    text = ISVC.format(name=w["model"]).replace(f"s3://models/{w['model']}/bootstrap", source)
    gh.commit(w["deploy"], "main", {"production/isvc.yaml": text}, author="alice", message="deploy")
    client.set_registered_model_alias(w["model"], "champion", version)


@pytest.mark.parametrize("protect", [True, False], ids=["protected", "protect_aliases-false"])
def test_champion_moved_by_hand_is_put_back_on_what_git_deploys(mbot, fakes, mlflow_client, protect):
    gh, _ = fakes
    w = new_world(gh, mlflow_client, protect=protect)
    v1, v2 = register(mlflow_client, w), register(mlflow_client, w)
    deploy_to_production(gh, mlflow_client, w, v1)
    [first] = handled(mbot, w["model"], "model_version_alias.created")
    assert "holds version " + v1 + ", which git deploys" in first.outcome, first

    mlflow_client.set_registered_model_alias(w["model"], "champion", v2)  # by hand, in the MLflow UI
    started = time.monotonic()
    if protect:
        # one webhook round trip: the hand move's delivery puts it back (its own alias event finds it in step)
        eventually("champion back on v1", lambda: mlflow_client.get_model_version_by_alias(
            w["model"], "champion").version == v1, mbot)
        print(f"champion put back {time.monotonic() - started:.2f} s after the hand move")
    moved = handled(mbot, w["model"], "model_version_alias.created", count=2)[1]
    holder = mlflow_client.get_model_version_by_alias(w["model"], "champion").version
    [rec] = [r for r in mbot.audit() if r.get("model") == w["model"] and r.get("event") == "alias drift"]
    assert rec["version"] == v2 and rec["deployed"] == v1 and rec["environment"] == "production"
    assert rec["actor"] == "unknown (MLflow webhooks do not name the user)" and rec["delivery"] == moved.id
    drift = tags_of(mlflow_client, w["model"], v2)["mlgate.alias_drift.production"]
    if protect:
        assert holder == v1 and rec["outcome"] == "alias put back" and "put it back on version " + v1 in drift
        # the put-back is an alias event too: in step, nothing more
        third = handled(mbot, w["model"], "model_version_alias.created", count=3)[2]
        assert third.outcome.endswith(f"holds version {v1}, which git deploys"), third
    else:
        assert holder == v2 and rec["outcome"] == "drift reported" and "protect_aliases: false" in drift
    assert gh.pulls(w["deploy"]) == []


def test_champion_deleted_by_hand_is_put_back_on_what_mlgate_promoted_and_git_deploys(mbot, fakes, mlflow_client):
    gh, _ = fakes
    w = new_world(gh, mlflow_client)
    v1 = register(mlflow_client, w)
    mlflow_client.set_model_version_tag(w["model"], v1, "mlgate.promoted.production.at", "2027-01-15T08:00:00+00:00")
    deploy_to_production(gh, mlflow_client, w, v1)  # as a landed promotion leaves it
    handled(mbot, w["model"], "model_version_alias.created")  # the bot now knows the model's repository

    mlflow_client.delete_registered_model_alias(w["model"], "champion")  # by hand, in the MLflow UI
    eventually("champion back on v1", lambda: "champion" in mlflow_client.get_registered_model(w["model"]).aliases
               and mlflow_client.get_model_version_by_alias(w["model"], "champion").version == v1, mbot)
    [gone] = handled(mbot, w["model"], "model_version_alias.deleted")
    assert "alias 'champion' holds no version" in gone.outcome and f"put it back on version {v1}" in gone.outcome
    [rec] = [r for r in mbot.audit() if r.get("model") == w["model"] and r.get("event") == "alias drift"]
    assert rec["deployed"] == v1 and rec["outcome"] == "alias put back" and rec["delivery"] == gone.id
    assert rec["actor"] == "unknown (MLflow webhooks do not name the user)"
    # the put-back is an alias event too: in step, nothing more
    again = handled(mbot, w["model"], "model_version_alias.created", count=2)[1]
    assert again.outcome.endswith(f"holds version {v1}, which git deploys"), again
    assert gh.pulls(w["deploy"]) == []


def test_gitlab_challenger_opens_one_merge_request_through_the_models_mapping(mbot, fakes, mlflow_client):
    from mlgate.core.config import parse
    from mlgate.core.promotion import gates_fingerprint

    _, gl = fakes
    deploy = f"grp/deploy-{GL_MODEL[-6:]}"
    yml = mlgate_yml(GL_MODEL, deploy, extra_staging="    trigger: {alias: challenger}\n")
    gl.add_project(deploy, {"staging/isvc.yaml": ISVC.format(name=GL_MODEL),
                            "production/isvc.yaml": ISVC.format(name=GL_MODEL)})
    gl.add_project(GL_REPO, {".mlgate.yml": yml})
    mlflow_client.create_registered_model(GL_MODEL)
    mv = mlflow_client.create_model_version(GL_MODEL, source=f"s3://models/{GL_MODEL}/a1", tags={
        "mlgate.gates": "passed", "mlgate.gates.fingerprint": gates_fingerprint(parse(yml))})
    errors = len(gl.errors)
    mlflow_client.set_registered_model_alias(GL_MODEL, "challenger", mv.version)
    [info] = handled(mbot, GL_MODEL, "model_version_alias.created")
    assert "staging: promotion PR opened" in info.outcome, info
    mrs = gl.projects[deploy].mrs
    assert len(mrs) == 1 and mrs[1].source_branch == f"mlgate/promote/{GL_MODEL}/staging/v{mv.version}"
    assert gl.errors[errors:] == [], "the bot sent requests the documented GitLab API does not accept"


def test_wrong_signature_stale_timestamp_or_no_signature_get_401_and_nothing_is_stored(mbot):
    body = json.dumps({"entity": "model_version_alias", "action": "created", "timestamp": "2026-01-01T00:00:00Z",
                       "data": {"name": "x", "alias": "champion", "version": "1"}})

    sent: list[str] = []

    def send(secret: str | None, ts: int) -> httpx.Response:
        delivery = str(uuid.uuid4())
        sent.append(delivery)
        headers = {"Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": str(ts)}
        if secret is not None:
            headers["X-MLflow-Signature"] = _generate_hmac_signature(secret, delivery, str(ts), body)
        return httpx.post(f"{mbot.url}/webhooks/mlflow", content=body.encode(), headers=headers)

    now = int(time.time())
    for secret, ts, why in [("not-the-secret", now, "does not match"), (MLFLOW_SECRET, now - 301, "300 s"),
                            (None, now, "missing X-MLflow-Signature")]:
        r = send(secret, ts)
        assert r.status_code == 401 and why in r.json()["error"], r.text
    # nothing of the refused requests was stored (counted by their ids: the shared MLflow server
    # delivers other tests' registry events to this bot meanwhile)
    stored = {d.id for d in mbot.store().list_deliveries(limit=100000)}
    assert not stored & set(sent)
    assert send(MLFLOW_SECRET, now).status_code == 202  # the same request, signed right, is taken
    assert sent[-1] in {d.id for d in mbot.store().list_deliveries(limit=100000)}
    assert MLFLOW_SECRET not in mbot.log.read_text()


def test_explain_a_saved_mlflow_delivery(mbot, fakes, mlflow_client, tmp_path):
    gh, _ = fakes
    w = new_world(gh, mlflow_client)
    v = register(mlflow_client, w, gates="")
    mlflow_client.set_registered_model_alias(w["model"], "challenger", v)
    [info] = handled(mbot, w["model"], "model_version_alias.created")
    env = {"MLGATE_DATABASE_URL": mbot.database_url, "PATH": str(VENV_BIN)}
    shown = subprocess.run([str(VENV_BIN / "mlgate"), "bot", "show", info.id], env=env, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    (tmp_path / "d.json").write_text(shown.stdout)
    repo = gh.repos[w["repo"]]
    facts = {"config": repo.git.read(repo.git.branch("main"), ".mlgate.yml").decode(),
             "registry": {"versions": {v: {"tags": tags_of(mlflow_client, w["model"], v)}}}}
    (tmp_path / "f.json").write_text(json.dumps(facts))
    out = subprocess.run([str(VENV_BIN / "mlgate"), "bot", "explain", str(tmp_path / "d.json"), "--facts",
                          str(tmp_path / "f.json")], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "delivery: mlflow model_version_alias.created"
    assert "trigger of staging: version " + v + " not eligible" in out.stdout
    assert "has no mlgate.gates tag" in out.stdout and "would: open no PR; tag version" in out.stdout


def test_the_periodic_check_puts_back_an_alias_moved_while_no_webhook_reached_the_bot(fakes, mlflow_server,
                                                                                   mlflow_client, tmp_path):
    """No bot knows this model when its champion is moved (no mlgate.source_* tags, not in any models:
    mapping): the periodic check of a bot that lists it finds the drift, and acts on its second sight."""
    from mlgate.bot.handlers.common import make_context
    from mlgate.bot.handlers.registry import check_registry
    from mlgate.bot.settings import BotSettings
    from mlgate.edge.db.store import Store

    gh, _ = fakes
    w = new_world(gh, mlflow_client)
    v1, v2 = register(mlflow_client, w, forge=None), register(mlflow_client, w, forge=None)
    deploy_to_production(gh, mlflow_client, w, v1)
    mlflow_client.set_registered_model_alias(w["model"], "champion", v2)  # while the bot is down
    settings = BotSettings(github_api_url=gh.url, github_token=GH_TOKEN, tracking_uri=mlflow_server, bot_login=BOT,
                           github_write_interval=0, database_url=f"sqlite:///{tmp_path}/bot.db",
                           models={w["model"]: f"github:{w['repo']}"})
    store = Store(settings.database_url)
    ctx = make_context(settings, store)
    assert check_registry(ctx) == ""  # first sight: a merge's webhook may still be on its way
    assert mlflow_client.get_model_version_by_alias(w["model"], "champion").version == v2
    done = check_registry(ctx)
    assert f"put it back on version {v1}" in done, done
    assert mlflow_client.get_model_version_by_alias(w["model"], "champion").version == v1
    [rec] = [r for r in store.audit_records() if r.get("model") == w["model"]]
    assert rec["outcome"] == "alias put back" and rec["cause"] == "found by the bot's periodic check"
    assert check_registry(ctx) == ""  # in step now
    store.close()


def test_the_periodic_check_reports_a_drift_it_may_not_correct_once_and_puts_back_a_deleted_alias(
        fakes, mlflow_server, mlflow_client, tmp_path):
    from mlgate.bot.handlers.common import make_context
    from mlgate.bot.handlers.registry import check_registry
    from mlgate.bot.settings import BotSettings
    from mlgate.edge.db.store import Store

    gh, _ = fakes
    report, protect = new_world(gh, mlflow_client, protect=False), new_world(gh, mlflow_client)
    r1, r2, r3 = (register(mlflow_client, report, forge=None) for _ in range(3))
    deploy_to_production(gh, mlflow_client, report, r1)
    mlflow_client.set_registered_model_alias(report["model"], "champion", r2)  # while the bot is down
    p1 = register(mlflow_client, protect, forge=None)
    mlflow_client.set_model_version_tag(protect["model"], p1, "mlgate.promoted.production.at", "2027-01-15T08:00:00Z")
    deploy_to_production(gh, mlflow_client, protect, p1)
    mlflow_client.delete_registered_model_alias(protect["model"], "champion")  # while the bot is down
    settings = BotSettings(github_api_url=gh.url, github_token=GH_TOKEN, tracking_uri=mlflow_server, bot_login=BOT,
                           github_write_interval=0, database_url=f"sqlite:///{tmp_path}/bot.db",
                           models={w["model"]: f"github:{w['repo']}" for w in (report, protect)})
    store = Store(settings.database_url)
    ctx = make_context(settings, store)

    def drifts(w):
        return [r for r in store.audit_records() if r.get("model") == w["model"] and r.get("event") == "alias drift"]

    passes = [check_registry(ctx) for _ in range(6)]
    assert passes[0] == "" and f"put it back on version {p1}" in passes[1] and "not put back" in passes[1], passes
    assert passes[2:] == [""] * 4, passes  # reported once while the same drift lasts, not every other pass
    assert mlflow_client.get_model_version_by_alias(protect["model"], "champion").version == p1
    assert [r["outcome"] for r in drifts(protect)] == ["alias put back"] and drifts(protect)[0]["version"] is None
    assert [r["outcome"] for r in drifts(report)] == ["drift reported"]
    mlflow_client.set_registered_model_alias(report["model"], "champion", r3)  # another drift: reported again
    assert check_registry(ctx) == "" and "not put back" in check_registry(ctx)
    assert [r["version"] for r in drifts(report)] == [r2, r3]
    store.close()


def test_a_registry_event_finds_the_github_app_installation_of_the_models_repository(tmp_path):
    """Forge deliveries name their App installation; registry events do not: the bot asks GitHub
    (GET /repos/{owner}/{repo}/installation with the App's JWT) and reads the repository through it."""
    from types import SimpleNamespace

    from pydantic import SecretStr

    from mlgate.edge.forges import ForgeError, github_installation_id, make_forge
    from tests.fakes.github_server import FakeGitHub, app_keypair

    private, public = app_keypair()
    fake = FakeGitHub(tmp_path, app=(4242, public)).start()
    try:
        fake.add_repo("acme/fraud", {".mlgate.yml": "model: fraud\n"})
        settings = SimpleNamespace(github_api_url=fake.url, github_app_id=4242, github_private_key=SecretStr(private),
                                   github_token=None, github_write_interval=0, bot_login=BOT)
        installation = github_installation_id(settings, "acme/fraud")
        assert installation == 1  # the fake's installation
        forge = make_forge("github", settings, installation)
        assert forge.read_file("acme/fraud", ".mlgate.yml", "main") == "model: fraud\n"
        with pytest.raises(ForgeError, match="not installed on acme/other"):
            github_installation_id(settings, "acme/other")
        assert github_installation_id(SimpleNamespace(github_app_id=None, github_private_key=None), "acme/fraud") is None
        assert [e for e in fake.errors if "acme/other" not in e] == []
    finally:
        fake.stop()
