"""Argo Workflows: the WorkflowTemplates in workflows/, the adapter and ``mlgate argo`` against a fake
Argo Server that validates every request and response against Argo's swagger.

Scenarios of issue 6: submission, idempotent resubmission, wait with success and with failure
(exit codes through the CLI run as a subprocess), stop, 401/403 messages naming server and
namespace, server unreachable (exit 3), and the "Parameters, tried" cases.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import stamina
from ruamel.yaml import YAML

from mlgate.edge import argo
from mlgate.core.argo_plan import workflow_name
from mlgate.core.config import ArgoBackend
from mlgate.core.errors import InfraError, UsageError
from tests.fakes.argo_server import FIXTURES, FakeArgoServer, SwaggerSpec, _strict

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "workflows").glob("*.yaml"))
TOKEN = "test-token-0d9f8e7c"
SHA = "89abcdef0123456789abcdef0123456789abcdef"
TRACKING = "https://mlflow.example.com"

# The WorkflowTemplate of the issue's "Parameters, tried".
ISSUE_TEMPLATE = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "WorkflowTemplate",
    "metadata": {"name": "train-small"},
    "spec": {
        "entrypoint": "main",
        "arguments": {"parameters": [{"name": "epochs", "value": "10"}, {"name": "gpu-type"}]},
        "templates": [
            {
                "name": "main",
                "container": {
                    "image": "busybox",
                    "command": ["echo", "{{workflow.parameters.epochs}}", "{{workflow.parameters.gpu-type}}"],
                },
            }
        ],
    },
}


def _load_yaml(path: Path) -> dict[str, Any]:
    return json.loads(json.dumps(YAML(typ="safe").load(path.read_text(encoding="utf-8"))))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fake():
    with FakeArgoServer(tokens={TOKEN: ["argo"]}, spec=SwaggerSpec()) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(request, monkeypatch):
    """Each test starts with the two WorkflowTemplates installed and ends with a clean record."""
    monkeypatch.setenv("ARGO_TOKEN", TOKEN)
    if "fake" not in request.fixturenames:
        yield
        return
    server: FakeArgoServer = request.getfixturevalue("fake")
    server.reset()
    for path in WORKFLOWS:
        server.add_workflow_template(_load_yaml(path), "argo")
    yield
    server.assert_valid()
    assert not server.rejected, f"the client sent invalid requests: {server.rejected}"


@pytest.fixture
def settings(fake) -> ArgoBackend:
    return ArgoBackend(server=fake.url, namespace="argo", image="ghcr.io/acme/wine-train:1.0")


def _submit(settings: ArgoBackend, **kw: Any) -> argo.Submission:
    args: dict[str, Any] = dict(
        model="wine",
        repo_url="git@github.com:acme/wine.git",
        commit=SHA,
        command=["python", "train.py", "--epochs", "3"],
        tracking_uri=TRACKING,
    )
    args.update(kw)
    return argo.submit_for_commit(settings, **args)


def _creates(fake: FakeArgoServer) -> list:
    return [r for r in fake.requests if r.operation == "WorkflowService_CreateWorkflow"]


# --------------------------------------------------------------------------- workflows/*.yaml


@pytest.fixture(scope="module")
def manifest_validators():
    schema = json.loads((FIXTURES / "schema.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return [cls(schema), cls(_strict(schema))]


def test_there_are_two_workflow_templates():
    assert [p.name for p in WORKFLOWS] == ["mlgate-evaluate.yaml", "mlgate-train-gpu.yaml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_templates_validate_against_argo_schema(path, manifest_validators):
    doc = _load_yaml(path)
    assert doc["kind"] == "WorkflowTemplate"
    assert doc["metadata"]["name"] == path.stem
    for v in manifest_validators:  # Argo's schema as is, then with unknown keys forbidden
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]
        assert errors == []


def test_schema_validation_catches_mistakes(manifest_validators):
    plain, strict = manifest_validators
    doc = _load_yaml(ROOT / "workflows" / "mlgate-train-gpu.yaml")
    typo = copy.deepcopy(doc)
    typo["spec"]["templates"][1]["retryStrategy"]["retrypolicy"] = "OnError"
    assert plain.is_valid(typo) and not strict.is_valid(typo)
    wrong_type = copy.deepcopy(doc)
    wrong_type["spec"]["activeDeadlineSeconds"] = "2d"
    assert not plain.is_valid(wrong_type)


def _container_templates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in doc["spec"]["templates"] if "container" in t]


def _substitute(text: str, values: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        key = m.group(1).strip()
        assert key.startswith("workflow.parameters."), key
        return values[key[len("workflow.parameters.") :]]

    return re.sub(r"\{\{([^}]+)\}\}", one, text)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_template_contents(path):
    doc = _load_yaml(path)
    spec = doc["spec"]
    params = {p["name"]: p for p in spec["arguments"]["parameters"]}
    for required in (
        "image",
        "repo",
        "commit",
        "model",
        "tracking-uri",
        "gpus",
        "node-selector",
        "tolerations",
        "spot",
    ):
        assert required in params, required
    assert not [n for n in params if re.search(r"token|password|secret|key", n)], "secrets must not be parameters"
    assert spec["activeDeadlineSeconds"] > 0
    labels_from = spec["workflowMetadata"]["labelsFrom"]
    assert labels_from["mlgate.dev/model"]["expression"] == "workflow.parameters.model"
    assert labels_from["mlgate.dev/commit"]["expression"] == "workflow.parameters.commit"

    # every {{workflow.parameters.X}} refers to a declared parameter; no other variables but workflow.name
    text = json.dumps(spec)
    for ref in re.findall(r"\{\{\s*([^}]+?)\s*\}\}", text):
        assert ref == "workflow.name" or ref.removeprefix("workflow.parameters.") in params, ref

    steps = [s for group in spec["templates"][0]["steps"] for s in group]
    assert len(steps) == 2 and all("spot" in s["when"] for s in steps)
    containers = _container_templates(doc)
    assert {t["name"] for t in containers} == {s["template"] for s in steps}
    defaults = {n: p.get("value", "") for n, p in params.items()}
    for t in containers:
        assert t["retryStrategy"]["retryPolicy"] == "OnError"
        assert int(_substitute(t["retryStrategy"]["limit"], defaults)) >= 1
        assert int(_substitute(t["activeDeadlineSeconds"], defaults)) > 0
        c = t["container"]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert t["metadata"]["labels"]["mlgate.dev/commit"] == "{{workflow.parameters.commit}}"
        env = {e["name"]: e for e in c["env"]}
        assert env["MLGATE_CONFIG"]["value"] == "{{workflow.parameters.config}}"  # read by mlgate's --config
        assert env["GIT_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "mlgate-git"
        assert c["envFrom"][0]["secretRef"]["name"] == "mlgate-train-env"
        script = c["args"][0]
        assert ("exec mlgate train" in script) == (path.stem == "mlgate-train-gpu")
        assert ("exec mlgate validate" in script) == (path.stem == "mlgate-evaluate")
        assert 'git checkout -q --detach "$MLGATE_COMMIT"' in script
        # the pod spec patch, with the defaults and with user values, is a valid JSON patch
        for values in (defaults, {**defaults, "gpus": "4", "node-selector": '{"gpu": "a100"}'}):
            patch = json.loads(_substitute(t["podSpecPatch"], values))
            assert patch["containers"][0]["name"] == "main"
            assert patch["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == values["gpus"]
            assert isinstance(patch["nodeSelector"], dict) and isinstance(patch["tolerations"], list)
            assert any(tol["key"] == "nvidia.com/gpu" for tol in patch["tolerations"])
    spot = [t for t in containers if t["name"].endswith("-spot")][0]
    spot_patch = json.loads(_substitute(spot["podSpecPatch"], defaults))
    assert spot_patch["nodeSelector"] == json.loads(defaults["spot-node-selector"])
    assert params["spot"]["enum"] == ["false", "true"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_template_script_clones_the_commit_and_runs_mlgate(path, tmp_path):
    """Run the step's shell script with a real git repository and a stub ``mlgate`` on PATH."""
    doc = _load_yaml(path)
    container = _container_templates(doc)[0]["container"]
    script = container["args"][0].replace("/workspace", str(tmp_path / "ws"))
    origin = tmp_path / "origin"
    _git_repo(origin)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=origin, capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "later"], cwd=origin, check=True, env=_git_env())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "mlgate"
    stub.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$(git rev-parse HEAD)" "$MLGATE_TRAIN_BACKEND" "${MLFLOW_TRACKING_URI:-}" '
        '"${GIT_TOKEN:-none}" "$MLGATE_CONFIG" "$@" > "$OUT"\n'
    )
    stub.chmod(0o755)
    env = {
        **_git_env(),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "OUT": str(tmp_path / "out.txt"),
        "MLGATE_REPO": origin.as_uri(),
        "MLGATE_COMMIT": sha,
        "MLGATE_MODEL": "wine",
        "MLGATE_CONFIG": "models/wine/.mlgate.yml",
        "MLGATE_TRACKING_URI": TRACKING,
        "MLGATE_COMMAND": "python train.py --name 'my model'",
        "MLGATE_VALIDATE_ARGS": "--version 3",
        "GIT_TOKEN": "s3cret-token",
    }
    subprocess.run(["sh", "-c", script], env=env, check=True, capture_output=True, timeout=60)
    out = (tmp_path / "out.txt").read_text().splitlines()
    assert out[0] == sha  # the commit, not the branch tip
    assert out[2] == TRACKING and out[3] == "none"  # the git token is gone before mlgate runs
    assert "s3cret" not in (tmp_path / "ws" / "src" / ".git" / "config").read_text()
    assert out[4] == "models/wine/.mlgate.yml"
    if path.stem == "mlgate-train-gpu":
        assert out[1] == "local"
        assert out[5:] == ["train", "--", "python", "train.py", "--name", "my model"]
    else:
        assert out[5:] == ["validate", "--version", "3"]


# --------------------------------------------------------------------------- the fake itself


def test_fake_rejects_what_argo_rejects(fake):
    h = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(
        f"{fake.url}/api/v1/workflows/argo",
        headers=h,
        json={"workflow": {"metadata": {"name": "x"}, "spec": {"workflowTemplateRef": {"nme": "t"}}}},
    )
    assert r.status_code == 400 and "nme" in r.json()["message"]
    r = httpx.post(
        f"{fake.url}/api/v1/workflows/argo",
        headers=h,
        json={"workflow": {"metadata": {"name": "x"}, "spec": {"activeDeadlineSeconds": "1h"}}},
    )
    assert r.status_code == 400
    r = httpx.get(f"{fake.url}/api/v1/workflows/argo", headers=h, params={"listOptions.watch": "yes"})
    assert r.status_code == 400
    assert httpx.get(f"{fake.url}/api/v1/nothing", headers=h).status_code == 404
    assert httpx.patch(f"{fake.url}/api/v1/workflows/argo/x", headers=h).status_code == 404
    assert len(fake.rejected) == 3
    fake.rejected.clear()
    # Argo's own submit-time check: a template parameter without a value
    body = {"workflow": {"metadata": {"name": "x"}, "spec": {"workflowTemplateRef": {"name": "mlgate-train-gpu"}}}}
    r = httpx.post(f"{fake.url}/api/v1/workflows/argo", headers=h, json=body)
    assert r.status_code == 400 and r.json()["message"] == "spec.arguments.image.value is required"
    # responses are checked too: a stored workflow with a wrong type is reported
    fake.workflows[("argo", "bad")] = {"metadata": {"name": "bad"}, "spec": {}, "status": {"progress": 1}}
    assert httpx.get(f"{fake.url}/api/v1/workflows/argo/bad", headers=h).status_code == 200
    assert fake.problems and "progress" in fake.problems[0]
    fake.problems.clear()


# --------------------------------------------------------------------------- submission


def test_submit_references_the_template_and_fills_every_parameter(fake, settings):
    sub = _submit(settings)
    assert sub.created and sub.phase == "Pending"
    assert sub.name == workflow_name("mlgate-train-gpu", "wine", SHA)
    assert sub.ui_url == f"{fake.url}/workflows/argo/{sub.name}"
    (req,) = _creates(fake)
    wf = req.body["workflow"]
    assert wf["spec"]["workflowTemplateRef"] == {"name": "mlgate-train-gpu"}
    assert "templates" not in wf["spec"]
    sent = {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}
    declared = [p["name"] for p in fake.templates[("argo", "mlgate-train-gpu")]["spec"]["arguments"]["parameters"]]
    assert list(sent) == declared  # every parameter, explicitly, in declaration order
    assert sent["image"] == "ghcr.io/acme/wine-train:1.0"
    assert sent["repo"] == "https://github.com/acme/wine.git"
    assert sent["commit"] == SHA and sent["model"] == "wine"
    assert sent["command"] == "python train.py --epochs 3"
    assert sent["gpus"] == "1" and sent["spot"] == "false" and sent["node-selector"] == "{}"
    assert "{{" not in json.dumps(req.body)
    assert wf["metadata"]["labels"]["mlgate.dev/commit"] == SHA
    assert fake.workflow(sub.name)["status"]["phase"] == "Pending"


def test_submit_options_override_defaults(fake, settings):
    s = settings.model_copy(update={"parameters": {"spot": "true", "retries": "5"}, "gpus": 2})
    sub = _submit(s, parameters={"retries": "1"}, command="python train.py", gpus=4)
    sent = dict(sub.parameters)
    assert sent["spot"] == "true" and sent["retries"] == "1" and sent["gpus"] == "4"
    assert sent["command"] == "python train.py"


def test_resubmitting_the_same_commit_returns_the_existing_workflow(fake, settings):
    first = _submit(settings)
    fake.advance(first.name, "Running")
    again = _submit(settings, command=["python", "other.py"])
    assert again.created is False
    assert again.name == first.name and again.phase == "Running"
    assert dict(again.parameters)["command"] == "python train.py --epochs 3"  # what it runs
    assert len(_creates(fake)) == 1
    # another commit, or another WorkflowTemplate for the same commit, is a new workflow
    other = _submit(settings, commit="f" * 40)
    evaluate = _submit(settings.model_copy(update={"template": "mlgate-evaluate"}))
    assert other.created and evaluate.created
    assert len({first.name, other.name, evaluate.name}) == 3
    assert "validate-args" in dict(evaluate.parameters) and "command" not in dict(evaluate.parameters)


def test_a_concurrent_submission_is_read_back_on_409(fake, settings):
    name = workflow_name("mlgate-train-gpu", "wine", SHA)
    h = {"Authorization": f"Bearer {TOKEN}"}
    params = [{"name": n, "value": v} for n, v in {"image": "i", "repo": "r", "commit": SHA, "model": "wine"}.items()]
    body = {
        "workflow": {
            "metadata": {"name": name},
            "spec": {"workflowTemplateRef": {"name": "mlgate-train-gpu"}, "arguments": {"parameters": params}},
        }
    }
    assert httpx.post(f"{fake.url}/api/v1/workflows/argo", headers=h, json=body).status_code == 200
    sub = _submit(settings)  # no labels on the first one, so only the name collides
    assert sub.created is False and sub.name == name
    statuses = [r.status for r in _creates(fake)]
    assert statuses == [200, 409]


# --------------------------------------------------------------------------- Parameters, tried


@pytest.fixture
def small(fake, settings) -> ArgoBackend:
    fake.add_workflow_template(ISSUE_TEMPLATE, "argo")
    return settings.model_copy(update={"template": "train-small", "image": None})


def test_issue_only_gpu_type_fills_epochs(fake, small):
    sub = _submit(small, parameters={"gpu-type": "a100"})
    (req,) = _creates(fake)
    assert req.body["workflow"]["spec"]["arguments"]["parameters"] == [
        {"name": "epochs", "value": "10"},
        {"name": "gpu-type", "value": "a100"},
    ]
    assert sub.created and "{{" not in json.dumps(req.body)


def test_issue_misspelled_parameter_is_rejected_before_anything_is_sent(fake, small):
    with pytest.raises(UsageError) as e:
        _submit(small, parameters={"epoch": "3", "gpu-type": "a100"})
    assert "'epoch'" in str(e.value) and "known parameters: epochs, gpu-type" in str(e.value)
    assert [r.method for r in fake.requests] == ["GET"]  # read the template, sent nothing


def test_issue_missing_parameter_is_named(fake, small):
    with pytest.raises(UsageError, match="gpu-type"):
        _submit(small)
    assert _creates(fake) == []


def test_placeholders_from_the_user_are_refused(fake, small):
    with pytest.raises(UsageError, match="Argo would expand it"):
        _submit(small, parameters={"gpu-type": "{{workflow.name}}"})
    assert _creates(fake) == []


def test_missing_template_says_how_to_install_it(fake, settings):
    with pytest.raises(
        UsageError,
        match=r"WorkflowTemplate 'nope' not found in namespace 'argo'.*kubectl -n argo apply -f workflows/nope.yaml",
    ):
        _submit(settings.model_copy(update={"template": "nope"}))


def test_local_tracking_uri_is_refused(fake, settings):
    with pytest.raises(UsageError, match="local to this machine"):
        _submit(settings, tracking_uri="sqlite:///.mlgate/mlflow.db")
    assert _creates(fake) == []


# --------------------------------------------------------------------------- status, wait, stop


def test_wait_reports_each_change_and_returns_the_final_status(fake, settings):
    sub = _submit(settings)
    moves = [
        lambda: fake.advance(sub.name, "Running", message=None),
        lambda: None,  # nothing changed: no progress call
        lambda: fake.advance(sub.name, "Running", nodes=[{"displayName": "train(1)", "phase": "Running"}]),
        lambda: fake.advance(sub.name, "Succeeded"),
    ]
    seen: list[str] = []
    final = argo.wait(
        settings, sub.name, poll_seconds=0, on_progress=lambda st: seen.append(st.phase), sleep=lambda _: moves.pop(0)()
    )
    assert final.succeeded and final.phase == "Succeeded"
    assert seen == ["Pending", "Running", "Running", "Succeeded"]
    assert moves == []


def test_wait_failure_names_the_failed_step(fake, settings):
    sub = _submit(settings)
    fake.advance(sub.name, "Failed", message="Error (exit code 1)", skipped=["train-spot"])
    st = argo.wait(settings, sub.name, poll_seconds=0)
    assert st.phase == "Failed" and st.failure_message() == "train: Error (exit code 1)"
    assert [(n.display_name, n.phase) for n in st.steps()] == [("train", "Failed"), ("train-spot", "Skipped")]


def test_wait_times_out_with_the_link(fake, settings):
    sub = _submit(settings)
    now = [0.0]
    with pytest.raises(InfraError, match=r"still Pending after 10 s.*" + re.escape(sub.ui_url)):
        argo.wait(
            settings,
            sub.name,
            poll_seconds=4,
            timeout_seconds=10,
            clock=lambda: now[0],
            sleep=lambda s: now.__setitem__(0, now[0] + s),
        )


def test_stop_a_running_workflow(fake, settings):
    sub = _submit(settings)
    fake.advance(sub.name, "Running")
    st = argo.stop(settings, sub.name, message="aborted by @alice")
    assert st.shutdown == "Stop" and not st.finished  # Argo only asks the controller to stop it
    (put,) = [r for r in fake.requests if r.method == "PUT"]
    assert put.path == f"/api/v1/workflows/argo/{sub.name}/stop"
    assert put.body == {"name": sub.name, "namespace": "argo", "message": "aborted by @alice"}
    final = argo.wait(settings, sub.name, poll_seconds=0)
    assert final.phase == "Failed" and final.message == "Stopped with strategy 'Stop'"
    assert final.failure_message() == "train: workflow shutdown with strategy:  Stop"
    # stopping a finished workflow sends nothing and reports its state
    assert argo.stop(settings, sub.name).phase == "Failed"
    assert len([r for r in fake.requests if r.method == "PUT"]) == 1


def test_stop_racing_with_the_end_reports_the_final_state(fake, settings, monkeypatch):
    sub = _submit(settings)
    real = argo.get_status
    calls = []

    def stale_then_real(s, name):  # the first read still sees it running; then it ends
        calls.append(name)
        st = real(s, name)
        if len(calls) == 1:
            fake.advance(sub.name, "Succeeded")
        return st

    monkeypatch.setattr(argo, "get_status", stale_then_real)
    st = argo.stop(settings, sub.name)
    assert st.phase == "Succeeded"
    assert [r.status for r in fake.requests if r.method == "PUT"] == [400]


def test_terminate(fake, settings):
    sub = _submit(settings)
    assert argo.terminate(settings, sub.name).shutdown == "Terminate"
    assert argo.get_status(settings, sub.name).message == "Stopped with strategy 'Terminate'"


def test_status_of_unknown_workflow(fake, settings):
    with pytest.raises(UsageError, match="workflow 'ghost' not found in namespace 'argo'"):
        argo.get_status(settings, "ghost")


# --------------------------------------------------------------------------- auth and reachability


def test_401_names_server_and_namespace_and_not_the_token(fake, settings, monkeypatch):
    monkeypatch.setenv("ARGO_TOKEN", "wrong-secret-value")
    with pytest.raises(argo.ArgoAuthError) as e:
        _submit(settings)
    msg = str(e.value)
    assert fake.url in msg and "'argo'" in msg and "401" in msg and "$ARGO_TOKEN" in msg
    assert "wrong-secret-value" not in msg
    assert e.value.exit_code == 2
    monkeypatch.delenv("ARGO_TOKEN")
    with pytest.raises(argo.ArgoAuthError, match=r"no token was sent \(\$ARGO_TOKEN is not set"):
        argo.get_status(settings, "x")


def test_403_names_the_namespace(fake, settings):
    with pytest.raises(argo.ArgoAuthError) as e:
        _submit(settings.model_copy(update={"namespace": "ml-prod"}))
    msg = str(e.value)
    assert "403" in msg and "'ml-prod'" in msg and fake.url in msg


def test_token_from_file(fake, settings, tmp_path, monkeypatch):
    monkeypatch.delenv("ARGO_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text(f"Bearer {TOKEN}\n")
    s = settings.model_copy(update={"token_file": str(token_file)})
    assert _submit(s).created
    with pytest.raises(UsageError, match="cannot read the Argo token file"):
        argo.get_status(s.model_copy(update={"token_file": str(tmp_path / "missing")}), "x")


def test_a_passing_5xx_is_retried_for_reads_and_a_lasting_one_is_an_infrastructure_error(fake, settings):
    sub = _submit(settings)
    with stamina.set_testing(True, attempts=3, cap=True):  # the same attempts, without the waits
        fake.fail_next(503, times=1)
        assert argo.get_status(settings, sub.name).phase == "Pending"
        fake.fail_next(500, times=3, message="etcdserver: request timed out")
        with pytest.raises(InfraError) as e:
            argo.get_status(settings, sub.name)
    assert len([r for r in fake.requests if r.status == 500]) == 3
    assert fake.url in str(e.value) and "etcdserver: request timed out" in str(e.value) and e.value.exit_code == 3
    fake.fail_next(503, times=1, operation="WorkflowService_CreateWorkflow")
    with pytest.raises(InfraError, match="failed to create a workflow"):  # a write is not retried blindly
        _submit(settings, commit="e" * 40)


def test_server_without_scheme_is_a_config_error():
    with pytest.raises(UsageError, match="must be the Argo Server's URL with http:// or https://"):
        argo.get_status(ArgoBackend(server="argo.example.com:2746"), "x")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_an_infrastructure_error():
    url = f"http://127.0.0.1:{_closed_port()}"
    s = ArgoBackend(server=url, namespace="ml")
    t = time.monotonic()
    with pytest.raises(InfraError, match=re.escape(f"cannot reach Argo Server {url}") + r".*namespace 'ml'") as e:
        argo.get_status(s, "x")
    assert e.value.exit_code == 3
    assert time.monotonic() - t < 5  # a few quick retries, not a hang


# --------------------------------------------------------------------------- the CLI, as a user runs it


def _git_env() -> dict[str, str]:
    return {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def _git_repo(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    env = _git_env()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True, env=env)
    (path / "train.py").write_text("print('training')\n")
    subprocess.run(["git", "add", "."], cwd=path, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=path, check=True, env=env)


@pytest.fixture
def project(tmp_path, fake) -> Path:
    repo = tmp_path / "wine"
    _git_repo(repo)
    (repo / ".mlgate.yml").write_text(
        "model: wine\n"
        f"tracking_uri: {TRACKING}\n"
        "train:\n"
        "  command: [python, train.py]\n"
        "  backend: argo\n"
        "  argo:\n"
        f"    server: {fake.url}\n"
        "    namespace: argo\n"
        "    image: ghcr.io/acme/wine-train:1.0\n"
        "    gpus: 2\n"
    )
    subprocess.run(["git", "remote", "add", "origin", "https://github.com/acme/wine.git"], cwd=repo, check=True)
    return repo


def _head(repo: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "GITHUB_OUTPUT")}
    env.update(ARGO_TOKEN=TOKEN, MLGATE_ARGO_POLL_SECONDS="0.05", GITHUB_OUTPUT=str(tmp_path / "gh-output"))
    env.update(extra)
    return env


def _mlgate(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlgate", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _drive(fake: FakeArgoServer, name: str, phases: list[tuple[str, dict[str, Any]]]) -> threading.Thread:
    """Move a workflow through phases, each after the CLI has seen the previous one (a GET)."""

    def gets() -> int:
        return sum(1 for r in list(fake.requests) if r.method == "GET" and r.path.endswith(f"/{name}"))

    def run() -> None:
        deadline = time.monotonic() + 60
        while ("argo", name) not in fake.workflows or gets() == 0:
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        for phase, kw in phases:
            seen = gets()
            fake.advance(name, phase, **kw)
            while gets() <= seen and time.monotonic() < deadline:
                time.sleep(0.02)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_cli_submit_wait_succeeds(fake, project, tmp_path):
    sha = _head(project)
    name = workflow_name("mlgate-train-gpu", "wine", sha)
    driver = _drive(fake, name, [("Running", {"skipped": ["train-spot"]}), ("Succeeded", {"skipped": ["train-spot"]})])
    r = _mlgate(["argo", "submit", "--wait", "-p", "retries=1"], project, _cli_env(tmp_path))
    driver.join(5)
    assert r.returncode == 0, r.stderr
    url = f"{fake.url}/workflows/argo/{name}"
    out = r.stdout
    assert f"submitted workflow {name}" in out and url in out
    assert re.search(rf"\] workflow {name}: Pending", out)
    assert re.search(r"\]   train: Running", out) and re.search(r"\]   train: Succeeded", out)
    assert out.rstrip().endswith(f"workflow {name} Succeeded")
    sent = {p["name"]: p["value"] for p in _creates(fake)[0].body["workflow"]["spec"]["arguments"]["parameters"]}
    assert sent["commit"] == sha and sent["gpus"] == "2" and sent["retries"] == "1"
    assert sent["command"] == "python train.py" and sent["tracking-uri"] == TRACKING
    assert sent["config"] == ".mlgate.yml"
    assert (tmp_path / "gh-output").read_text().splitlines() == [
        f"workflow-name={name}",
        f"workflow-url={url}",
        "workflow-phase=Succeeded",
    ]
    assert TOKEN not in r.stdout + r.stderr
    assert "is on no remote branch" in r.stderr  # the commit was never pushed: the user is told


def test_cli_submit_wait_fails_with_the_step_message(fake, project, tmp_path):
    name = workflow_name("mlgate-train-gpu", "wine", _head(project))
    driver = _drive(fake, name, [("Running", {}), ("Failed", {"message": "Error (exit code 1)"})])
    r = _mlgate(["argo", "submit", "--wait"], project, _cli_env(tmp_path))
    driver.join(5)
    assert r.returncode == 1, r.stderr
    assert f"workflow {name} Failed: train: Error (exit code 1)" in r.stderr
    assert re.search(r"\]   train: Failed \(Error \(exit code 1\)\)", r.stdout)


def test_cli_resubmit_and_status_and_stop(fake, project, tmp_path):
    env = _cli_env(tmp_path)
    first = _mlgate(["argo", "submit", "--output", "json"], project, env)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["created"] is True and data["phase"] == "Pending"
    second = _mlgate(["argo", "submit"], project, env)
    assert second.returncode == 0 and "already exists" in second.stdout and "not submitting again" in second.stdout
    assert len(_creates(fake)) == 1
    fake.advance(data["name"], "Running")
    st = _mlgate(["argo", "status", data["name"]], project, env)
    assert st.returncode == 0 and f"workflow {data['name']}: Running" in st.stdout and "  train: Running" in st.stdout
    stopped = _mlgate(["argo", "stop", data["name"], "--wait"], project, env)
    assert stopped.returncode == 0, stopped.stderr
    assert f"workflow {data['name']}: Failed (Stopped with strategy 'Stop')" in stopped.stdout
    assert fake.workflow(data["name"])["spec"]["shutdown"] == "Stop"


def test_cli_config_in_a_subdirectory_is_found_by_the_step(fake, project, tmp_path):
    sub = project / "models" / "wine"
    sub.mkdir(parents=True)
    (project / ".mlgate.yml").rename(sub / ".mlgate.yml")
    r = _mlgate(["argo", "submit", "--config", "models/wine/.mlgate.yml"], project, _cli_env(tmp_path))
    assert r.returncode == 0, r.stderr
    sent = {p["name"]: p["value"] for p in _creates(fake)[0].body["workflow"]["spec"]["arguments"]["parameters"]}
    assert sent["config"] == "models/wine/.mlgate.yml"


def test_cli_misspelled_parameter_exits_2_and_sends_nothing(fake, project, tmp_path):
    r = _mlgate(["argo", "submit", "-p", "retry=2"], project, _cli_env(tmp_path))
    assert r.returncode == 2
    assert (
        "unknown parameter 'retry' (did you mean 'retries'?)" in r.stderr
        and "known parameters: image, repo" in r.stderr
    )
    assert _creates(fake) == []


def test_cli_auth_error_exits_2_naming_server_and_namespace(fake, project, tmp_path):
    r = _mlgate(["argo", "submit"], project, _cli_env(tmp_path, ARGO_TOKEN="not-the-token"))
    assert r.returncode == 2
    assert fake.url in r.stderr and "namespace 'argo'" in r.stderr and "401" in r.stderr
    assert "not-the-token" not in r.stderr and "Traceback" not in r.stderr


def test_cli_unreachable_server_exits_3(project, tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}"
    cfg = project / ".mlgate.yml"
    cfg.write_text(re.sub(r"server: \S+", f"server: {url}", cfg.read_text()))
    r = _mlgate(["argo", "submit", "--wait"], project, _cli_env(tmp_path))
    assert r.returncode == 3
    assert f"cannot reach Argo Server {url}" in r.stderr and "Traceback" not in r.stderr


def test_argo_help_does_not_import_hera():
    code = (
        "import sys; from click.testing import CliRunner; from mlgate.cli.argocmd import argo; "
        "r = CliRunner().invoke(argo, ['submit', '--help']); assert r.exit_code == 0, r.output; "
        "assert 'Exit codes' in r.output and '401' in r.output, r.output; "
        "assert 'hera' not in sys.modules and 'mlflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------- names in API paths, server URLs

BAD_NAMES = ["../../workflow-templates/argo/mlgate-train-gpu", "../../../x?y=1#", "", "bad name!"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_workflow_names_are_validated_before_any_request(fake, settings, name):
    calls = {
        "status": lambda: argo.get_status(settings, name),
        "stop": lambda: argo.stop(settings, name),
        "terminate": lambda: argo.terminate(settings, name),
        "wait": lambda: argo.wait(settings, name, sleep=lambda s: None),
    }
    for what, call in calls.items():
        with pytest.raises(UsageError, match=r"^workflow name .* is not a valid Kubernetes name: it must be a DNS-1123 subdomain"):
            call()
    assert fake.requests == []


def test_template_names_and_namespaces_are_validated_before_any_request(fake, settings):
    with pytest.raises(UsageError, match=r"^WorkflowTemplate name 'bad name!' is not a valid Kubernetes name"):
        argo.fetch_template(settings, "bad name!")
    with pytest.raises(UsageError, match=r"^WorkflowTemplate name '\.\./x' is not a valid Kubernetes name"):
        _submit(settings.model_copy(update={"template": "../x"}))
    for ns in ["../workflow-templates", "argo?x=1", "", "a.b"]:
        with pytest.raises(UsageError, match=r"is not a valid Kubernetes namespace"):
            argo.get_status(settings.model_copy(update={"namespace": ns}), "wf")
    assert fake.requests == []


def test_path_segments_are_percent_encoded_as_a_second_guard(fake, settings, monkeypatch):
    monkeypatch.setattr(argo.argo_plan, "check_object_name", lambda what, name: name)  # the first guard off
    with pytest.raises(UsageError, match="not found"):
        argo.get_status(settings, "a/../b?c=1#d")
    assert [r.path for r in fake.requests] == ["/api/v1/workflows/argo/a%2F..%2Fb%3Fc%3D1%23d"]
    assert [r.query for r in fake.requests] == [{}]


def test_server_password_is_never_shown(fake, settings):
    s = settings.model_copy(update={"server": fake.url.replace("http://", "http://user:ARGOPW@")})
    with pytest.raises(argo.ArgoAuthError) as e:  # requests sends the URL's basic auth: refused
        argo.get_status(s, "wf")
    assert "ARGOPW" not in str(e.value) and fake.url.replace("http://", "http://user:***@") in str(e.value)
    assert argo.workflow_url(s, "wf") == fake.url.replace("http://", "http://user:***@") + "/workflows/argo/wf"
    closed = ArgoBackend(server=f"http://user:ARGOPW@127.0.0.1:{_closed_port()}", namespace="ml")
    with stamina.set_testing(True, attempts=2), pytest.raises(InfraError) as e:
        argo.get_status(closed, "wf")
    assert "ARGOPW" not in str(e.value) and "user:***@127.0.0.1" in str(e.value)


def test_malformed_server_url_is_a_config_error_and_not_retried():
    for server in ["http://[::1", "https://argo.example.com:99999", "http://user:ARGOPW@[::1"]:
        with pytest.raises(UsageError, match=r"^train\.argo\.server '.*' is not a valid URL") as e:
            argo.get_status(ArgoBackend(server=server), "wf")
        assert "ARGOPW" not in str(e.value)


def test_cli_refuses_bad_names_and_redacts_the_server_password(fake, project, tmp_path):
    env = _cli_env(tmp_path)
    for args in (
        ["argo", "status", "../../workflow-templates/argo/mlgate-train-gpu"],
        ["argo", "stop", "../../../x?y=1#"],
        ["argo", "status", ""],
        ["argo", "submit", "--template", "bad name!"],
    ):
        r = _mlgate(args, project, env)
        assert r.returncode == 2, (args, r.stderr)
        assert "is not a valid Kubernetes name" in r.stderr and "Traceback" not in r.stderr
    assert fake.requests == []

    cfg = project / ".mlgate.yml"
    cfg.write_text(re.sub(r"server: \S+", f"server: http://user:ARGOPW@127.0.0.1:{_closed_port()}", cfg.read_text()))
    r = _mlgate(["argo", "status", "wf1"], project, env)
    assert r.returncode == 3
    assert "stamina.retry_scheduled" in r.stderr  # the retry warnings are shown, redacted too
    assert "ARGOPW" not in r.stdout + r.stderr and "cannot reach Argo Server http://user:***@127.0.0.1:" in r.stderr

    cfg.write_text(re.sub(r"server: \S+", 'server: "http://[::1"', cfg.read_text()))
    r = _mlgate(["argo", "status", "wf1"], project, env)
    assert r.returncode == 2
    assert "train.argo.server 'http://[::1' is not a valid URL: Invalid IPv6 URL" in r.stderr
    assert "retry" not in r.stderr and "Traceback" not in r.stderr


def test_cli_submit_with_an_unwritable_github_output_submits_nothing(fake, project, tmp_path):
    out = tmp_path / "no-such-dir" / "out"
    r = _mlgate(["argo", "submit"], project, _cli_env(tmp_path, GITHUB_OUTPUT=str(out)))
    assert r.returncode == 2, r.stderr
    assert f"$GITHUB_OUTPUT ({out}) cannot be opened for append" in r.stderr and "Traceback" not in r.stderr
    assert _creates(fake) == [] and fake.requests == []
