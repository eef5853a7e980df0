"""Pure decisions for Argo submissions: parameters, names, labels, URLs, status and progress."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlgate.core import argo_plan as ap
from mlgate.core.argo_plan import DeclaredParameter as P
from mlgate.core.errors import UsageError

SHA = "0123456789abcdef0123456789abcdef01234567"

# The WorkflowTemplate of the issue's "Parameters, tried": epochs (default "10"), gpu-type (none).
ISSUE_TEMPLATE = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "WorkflowTemplate",
    "metadata": {"name": "train-small"},
    "spec": {
        "arguments": {
            "parameters": [
                {"name": "epochs", "value": "10"},
                {"name": "gpu-type"},
            ]
        }
    },
}


def test_declared_parameters_reads_value_default_valuefrom_enum():
    tmpl = {
        "spec": {
            "arguments": {
                "parameters": [
                    {"name": "a", "value": "1"},
                    {"name": "b", "default": "2"},
                    {"name": "c", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "c"}}},
                    {"name": "d", "enum": ["x", "y"], "value": "x", "description": "pick"},
                    {"name": "e"},
                ]
            }
        }
    }
    got = ap.declared_parameters(tmpl)
    assert got == [
        P("a", "1"),
        P("b", "2"),
        P("c", None, has_value_from=True),
        P("d", "x", enum=("x", "y"), description="pick"),
        P("e"),
    ]
    assert [p.required for p in got] == [False, False, False, False, True]
    assert ap.declared_parameters({"spec": {}}) == []


# ----------------------------------------------------------------- Parameters, tried (issue 6)


def test_issue_only_gpu_type_fills_epochs_explicitly():
    declared = ap.declared_parameters(ISSUE_TEMPLATE)
    res = ap.resolve_parameters("train-small", declared, user={"gpu-type": "a100"})
    assert res.values == (("epochs", "10"), ("gpu-type", "a100"))
    assert res.left_to_template == ()


def test_issue_misspelled_parameter_is_rejected_naming_the_known_ones():
    declared = ap.declared_parameters(ISSUE_TEMPLATE)
    with pytest.raises(UsageError) as e:
        ap.resolve_parameters("train-small", declared, user={"epoch": "3", "gpu-type": "a100"})
    msg = str(e.value)
    assert "'epoch'" in msg and "did you mean 'epochs'" in msg
    assert "known parameters: epochs, gpu-type" in msg
    assert "train-small" in msg


def test_issue_missing_required_parameter_is_named():
    declared = ap.declared_parameters(ISSUE_TEMPLATE)
    with pytest.raises(UsageError) as e:
        ap.resolve_parameters("train-small", declared, user={"epochs": "3"})
    assert "gpu-type" in str(e.value)
    assert "epochs" not in str(e.value).split("default:")[1]  # only the missing one is listed


def test_issue_no_placeholder_is_sent():
    declared = [P("run-name", "{{workflow.name}}"), P("epochs", "10"), P("gpu-type")]
    res = ap.resolve_parameters("t", declared, user={"gpu-type": "a100"})
    assert res.values == (("epochs", "10"), ("gpu-type", "a100"))
    assert res.left_to_template == ("run-name",)  # the template keeps its own expression
    assert ap.find_placeholders([{"name": n, "value": v} for n, v in res.values]) == []
    with pytest.raises(UsageError, match="Argo would expand it"):
        ap.resolve_parameters("t", declared, user={"gpu-type": "{{workflow.parameters.x}}"})


# ----------------------------------------------------------------- precedence and checks


@pytest.mark.parametrize(
    ("declared", "standard", "user", "expected"),
    [
        # template default only
        ([P("gpus", "1")], {}, {}, {"gpus": "1"}),
        # mlgate's value beats the template default
        ([P("gpus", "1")], {"gpus": "4"}, {}, {"gpus": "4"}),
        # the user's -p beats mlgate's value
        ([P("gpus", "1")], {"gpus": "4"}, {"gpus": "8"}, {"gpus": "8"}),
        # a standard value the template does not declare is not sent
        ([P("epochs", "10")], {"gpus": "4", "image": "img"}, {}, {"epochs": "10"}),
        # None means "unknown": the default stays
        ([P("image", "default-img")], {"image": None}, {}, {"image": "default-img"}),
        # valueFrom without a supplied value is left to Argo
        ([P("token-path", None, has_value_from=True)], {}, {}, {}),
        # ... but a supplied value is sent
        ([P("token-path", None, has_value_from=True)], {}, {"token-path": "/x"}, {"token-path": "/x"}),
        # empty string is a value
        ([P("command")], {"command": ""}, {}, {"command": ""}),
    ],
)
def test_resolution_precedence(declared, standard, user, expected):
    res = ap.resolve_parameters("t", declared, standard=standard, user=user)
    assert res.as_dict() == expected


def test_unused_standard_parameters_are_reported():
    res = ap.resolve_parameters("t", [P("epochs", "1")], standard={"gpus": "2", "image": None})
    assert res.unused_standard == ("gpus",)


def test_missing_standard_parameter_gets_a_hint():
    with pytest.raises(UsageError) as e:
        ap.resolve_parameters("mlgate-train-gpu", [P("image"), P("x")], standard={"image": None})
    msg = str(e.value)
    assert "image (set train.argo.image" in msg and "x (pass -p x=VALUE)" in msg
    assert "parameters without a default" in msg


def test_enum_is_enforced():
    declared = [P("spot", "false", enum=("false", "true"))]
    assert ap.resolve_parameters("t", declared, user={"spot": "true"}).as_dict() == {"spot": "true"}
    with pytest.raises(UsageError, match="must be one of false, true"):
        ap.resolve_parameters("t", declared, user={"spot": "yes"})


@pytest.mark.parametrize("name", ["model", "commit"])
def test_identity_parameters_cannot_be_overridden(name):
    with pytest.raises(UsageError, match="set by mlgate"):
        ap.resolve_parameters("t", [P("model"), P("commit")], standard={"model": "m", "commit": SHA}, user={name: "x"})


def test_json_values_with_closing_braces_are_fine():
    v = '{"a": {"b": "c"}}'
    assert ap.resolve_parameters("t", [P("node-selector", "{}")], user={"node-selector": v}).as_dict() == {
        "node-selector": v
    }


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([], {}),
        (["a=1", "b=x=y", "c="], {"a": "1", "b": "x=y", "c": ""}),
        ([" key =v"], {"key": "v"}),
    ],
)
def test_parse_parameter_options(items, expected):
    assert ap.parse_parameter_options(items) == expected


@pytest.mark.parametrize("items", [["novalue"], ["=v"], ["a=1", "a=2"]])
def test_parse_parameter_options_rejects(items):
    with pytest.raises(UsageError):
        ap.parse_parameter_options(items)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (None, ""),
        (["python", "train.py", "--name", "my model"], "python train.py --name 'my model'"),
        ("python train.py --epochs 3", "python train.py --epochs 3"),
        (["echo", "$HOME;rm"], "echo '$HOME;rm'"),
    ],
)
def test_command_string(command, expected):
    assert ap.command_string(command) == expected


def test_command_string_rejects_unbalanced_quotes():
    with pytest.raises(UsageError, match="does not split"):
        ap.command_string("python 'train.py")


# ----------------------------------------------------------------- identity


@pytest.mark.parametrize("commit", [SHA, SHA.upper(), f" {SHA}\n"])
def test_check_commit_accepts_full_sha(commit):
    assert ap.check_commit(commit) == SHA


@pytest.mark.parametrize("commit", ["0123456", "main", SHA + "0", "g" * 40, ""])
def test_check_commit_rejects_others(commit):
    with pytest.raises(UsageError, match="full 40-character SHA"):
        ap.check_commit(commit)


def test_workflow_name_is_deterministic_and_distinct():
    a = ap.workflow_name("mlgate-train-gpu", "wine", SHA)
    assert a == ap.workflow_name("mlgate-train-gpu", "wine", SHA)
    assert a.startswith("wine-train-gpu-0123456789ab-")
    others = {
        ap.workflow_name("mlgate-evaluate", "wine", SHA),
        ap.workflow_name("mlgate-train-gpu", "Wine", SHA),  # same slug, different model
        ap.workflow_name("mlgate-train-gpu", "wine", "f" * 40),
    }
    assert a not in others and len(others) == 3


_DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@given(
    model=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z"),
    template=st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z"),
    commit=st.from_regex(r"\A[0-9a-f]{40}\Z"),
)
def test_workflow_name_is_always_a_valid_kubernetes_name(model, template, commit):
    name = ap.workflow_name(template, model, commit)
    assert len(name) <= 63 and _DNS.match(name), name


def test_labels_and_selector():
    labels = ap.workflow_labels("mlgate-train-gpu", "wine.v2", SHA)
    assert labels == {
        "app.kubernetes.io/part-of": "mlgate",
        "mlgate.dev/model": "wine.v2",
        "mlgate.dev/commit": SHA,
        "mlgate.dev/template": "mlgate-train-gpu",
    }
    assert ap.label_selector(labels) == (
        f"app.kubernetes.io/part-of=mlgate,mlgate.dev/commit={SHA},"
        "mlgate.dev/model=wine.v2,mlgate.dev/template=mlgate-train-gpu"
    )


@pytest.mark.parametrize("model", ["wine-", "wine.", "_wine", "a" * 64])
def test_model_names_that_cannot_be_labels_are_refused(model):
    with pytest.raises(UsageError, match="cannot be a Kubernetes label value"):
        ap.workflow_labels("t", model, SHA)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/acme/wine.git", "https://github.com/acme/wine.git"),
        ("git@github.com:acme/wine.git", "https://github.com/acme/wine.git"),
        ("ssh://git@gitlab.example.com:2222/ml/wine.git", "https://gitlab.example.com/ml/wine.git"),
        ("https://gitlab-ci-token:glcbt-SECRET@gitlab.com/ml/wine.git", "https://gitlab.com/ml/wine.git"),
        ("https://user:pw@git.example.com:8443/r.git?x=1#f", "https://git.example.com:8443/r.git"),
        ("http://localhost:3000/acme/wine", "http://localhost:3000/acme/wine"),
    ],
)
def test_clean_repo_url(url, expected):
    assert ap.clean_repo_url(url) == expected


@pytest.mark.parametrize("url", ["/home/me/wine", "file:///home/me/wine", "../wine", "C:/src/wine", "ftp://x/y"])
def test_clean_repo_url_rejects_what_the_cluster_cannot_clone(url):
    with pytest.raises(UsageError, match="cannot clone|not a URL"):
        ap.clean_repo_url(url)


@pytest.mark.parametrize(
    "uri", ["https://mlflow.example.com", "http://mlflow:5000", "databricks", "postgresql://db/mlflow"]
)
def test_tracking_uri_reachable_from_the_cluster(uri):
    assert ap.check_tracking_uri(uri) == uri


@pytest.mark.parametrize("uri", ["sqlite:///.mlgate/mlflow.db", "file:///tmp/mlruns", "mlruns", "", "C:\\mlruns"])
def test_tracking_uri_local_to_this_machine_is_refused(uri):
    with pytest.raises(UsageError, match="local to this machine"):
        ap.check_tracking_uri(uri)


def test_find_placeholders_reports_paths():
    body = {"a": ["ok", "{{x}}"], "b": {"{{k}}": "v", "c": "y}}"}}
    assert ap.find_placeholders(body) == ["a[1]", "b.{{k}}"]


def test_workflow_url():
    assert ap.workflow_url("https://argo.example.com/", "ml", "w") == "https://argo.example.com/workflows/ml/w"


def test_plan_submission_end_to_end():
    tmpl = {
        "spec": {
            "arguments": {
                "parameters": [
                    {"name": "image"},
                    {"name": "repo"},
                    {"name": "commit"},
                    {"name": "model"},
                    {"name": "config", "value": ".mlgate.yml"},
                    {"name": "command", "value": ""},
                    {"name": "tracking-uri", "value": ""},
                    {"name": "gpus", "value": "1"},
                    {"name": "epochs", "value": "10"},
                ]
            }
        }
    }
    plan = ap.plan_submission(
        tmpl,
        template="mlgate-train-gpu",
        namespace="ml",
        model="wine",
        repo_url="git@github.com:acme/wine.git",
        commit=SHA.upper(),
        command=["python", "train.py"],
        tracking_uri="https://mlflow.example.com",
        gpus=2,
        image="ghcr.io/acme/wine:1",
        user_parameters={"epochs": "3"},
        config_path="models/wine/.mlgate.yml",
    )
    assert plan.parameters.values == (
        ("image", "ghcr.io/acme/wine:1"),
        ("repo", "https://github.com/acme/wine.git"),
        ("commit", SHA),
        ("model", "wine"),
        ("config", "models/wine/.mlgate.yml"),
        ("command", "python train.py"),
        ("tracking-uri", "https://mlflow.example.com"),
        ("gpus", "2"),
        ("epochs", "3"),
    )
    assert plan.name == ap.workflow_name("mlgate-train-gpu", "wine", SHA)
    assert plan.labels["mlgate.dev/commit"] == SHA
    assert plan.annotations == {"mlgate.dev/repo": "https://github.com/acme/wine.git"}


# ----------------------------------------------------------------- status and progress


def _wf(phase, nodes=(), message=None):
    st = {"phase": phase} if phase else {}
    if message:
        st["message"] = message
    st["nodes"] = {n["id"]: {"name": f"w[0].{n['displayName']}", "type": "Pod", **n} for n in nodes}
    return {"metadata": {"name": "w", "namespace": "ml", "labels": {"a": "b"}}, "status": st}


def test_parse_status_defaults_and_order():
    s = ap.parse_status(
        _wf(
            "",
            [
                {"id": "2", "displayName": "b", "phase": "Pending", "startedAt": "2024-01-01T00:00:02Z"},
                {"id": "1", "displayName": "a", "startedAt": "2024-01-01T00:00:01Z"},
            ],
        ),
        "https://argo/",
    )
    assert s.phase == "Pending" and not s.finished
    assert [n.display_name for n in s.nodes] == ["a", "b"]
    assert s.nodes[0].phase == "Pending"
    assert s.url == "https://argo/workflows/ml/w"
    assert s.labels == {"a": "b"}


def test_failure_message_prefers_the_failed_pod():
    s = ap.parse_status(
        _wf(
            "Failed",
            [
                {"id": "1", "displayName": "train(0)", "phase": "Error", "message": "pod deleted", "startedAt": "1"},
                {
                    "id": "2",
                    "displayName": "train(1)",
                    "phase": "Failed",
                    "message": "Error (exit code 1)",
                    "startedAt": "2",
                },
                {
                    "id": "3",
                    "displayName": "train",
                    "type": "Retry",
                    "phase": "Failed",
                    "message": "No more retries left",
                    "startedAt": "0",
                },
            ],
            message="child 'w-1' failed",
        ),
        "u",
    )
    assert s.finished and not s.succeeded
    assert s.failed_node().display_name == "train(1)"
    assert s.failure_message() == "train(1): Error (exit code 1)"
    assert ap.parse_status(_wf("Error", message="pod deleted"), "u").failure_message() == "pod deleted"
    assert ap.parse_status(_wf("Failed"), "u").failure_message() == "workflow Failed"


def test_progress_lines_one_line_per_change():
    a = ap.parse_status(_wf("Pending"), "u")
    b = ap.parse_status(
        _wf(
            "Running", [{"id": "1", "displayName": "train", "phase": "Pending", "message": "Unschedulable: 0/3 nodes"}]
        ),
        "u",
    )
    c = ap.parse_status(_wf("Running", [{"id": "1", "displayName": "train", "phase": "Running"}]), "u")
    d = ap.parse_status(_wf("Succeeded", [{"id": "1", "displayName": "train", "phase": "Succeeded"}]), "u")
    assert ap.progress_lines(None, a) == ["workflow w: Pending"]
    assert ap.progress_lines(a, b) == ["workflow w: Running", "  train: Pending (Unschedulable: 0/3 nodes)"]
    assert ap.progress_lines(b, c) == ["  train: Running"]
    assert ap.progress_lines(c, c) == []
    assert ap.progress_lines(c, d) == ["workflow w: Succeeded", "  train: Succeeded"]


def test_status_to_dict_is_json_friendly():
    import json

    s = ap.parse_status(_wf("Running", [{"id": "1", "displayName": "train", "phase": "Running"}]), "u")
    d = json.loads(json.dumps(s.to_dict()))
    assert d["phase"] == "Running" and d["nodes"] == [
        {"name": "train", "type": "Pod", "phase": "Running", "message": ""}
    ]


def test_failed_node_is_the_last_attempt_and_prefers_a_failed_script_at_equal_times():
    same_time = ap.parse_status(
        _wf(
            "Failed",
            [
                {
                    "id": "1",
                    "displayName": "train",
                    "phase": "Failed",
                    "message": "Error (exit code 1)",
                    "startedAt": "t",
                },
                {"id": "2", "displayName": "train(0)", "phase": "Error", "message": "pod deleted", "startedAt": "t"},
            ],
        ),
        "u",
    )
    assert same_time.failure_message() == "train: Error (exit code 1)"
    later_error = ap.parse_status(
        _wf(
            "Error",
            [
                {
                    "id": "1",
                    "displayName": "train(0)",
                    "phase": "Failed",
                    "message": "OOMKilled",
                    "startedAt": "1",
                    "finishedAt": "2",
                },
                {
                    "id": "2",
                    "displayName": "train(1)",
                    "phase": "Error",
                    "message": "pod deleted",
                    "startedAt": "3",
                    "finishedAt": "4",
                },
            ],
        ),
        "u",
    )
    assert later_error.failure_message() == "train(1): pod deleted"


@pytest.mark.parametrize(
    ("path", "expected"), [(".mlgate.yml", ".mlgate.yml"), ("./models/wine/.mlgate.yml", "models/wine/.mlgate.yml")]
)
def test_config_path_inside_the_repository(path, expected):
    assert ap.check_config_path(path) == expected


@pytest.mark.parametrize("path", ["/etc/mlgate.yml", "../other/.mlgate.yml", "a/../../b.yml", "", "C:/x.yml"])
def test_config_path_outside_the_repository_is_refused(path):
    with pytest.raises(UsageError, match="relative to the repository root"):
        ap.check_config_path(path)


# --------------------------------------------------------------------------- names, namespaces, server URLs


@pytest.mark.parametrize(
    "name",
    ["wine-train-gpu-0123456789ab-abcdef", "a", "0", "mlgate-train-gpu", "a.b-c.d", "x" * 253, "a1.b2"],
)
def test_valid_object_names_pass(name):
    assert ap.check_object_name("workflow name", name) == name


@pytest.mark.parametrize(
    "name",
    [
        "../../workflow-templates/argo/mlgate-train-gpu",
        "../../../x?y=1#",
        "",
        "bad name!",
        "Upper",
        "-lead",
        "trail-",
        "a..b",
        ".a",
        "a/b",
        "a%2Fb",
        "x" * 254,
        "a\n",
        "ä",
    ],
)
def test_invalid_object_names_are_refused_naming_the_rule(name):
    with pytest.raises(UsageError, match=r"^WorkflowTemplate name .* is not a valid Kubernetes name: it must be a DNS-1123 subdomain"):
        ap.check_object_name("WorkflowTemplate name", name)


def test_namespaces_are_dns1123_labels():
    assert ap.check_namespace("ml-prod") == "ml-prod"
    assert ap.check_namespace("x" * 63) == "x" * 63
    for bad in ["", "a.b", "../argo", "Argo", "x" * 64, "argo?x=1", "a b"]:
        with pytest.raises(UsageError, match=r"train\.argo\.namespace\) is not a valid Kubernetes namespace: it must be a DNS-1123 label"):
            ap.check_namespace(bad)


def test_check_server_url():
    assert ap.check_server_url("https://argo.example.com:2746") == "https://argo.example.com:2746"
    with pytest.raises(UsageError, match=r"^train\.argo\.server 'http://\[::1' is not a valid URL: Invalid IPv6 URL"):
        ap.check_server_url("http://[::1")
    with pytest.raises(UsageError, match=r"^train\.argo\.server 'http://u:\*\*\*@h:99999' is not a valid URL: Port out of range") as e:
        ap.check_server_url("http://u:SECRETPW@h:99999")
    assert "SECRETPW" not in str(e.value)
    with pytest.raises(UsageError, match="it has no host"):
        ap.check_server_url("http:///api")
    with pytest.raises(UsageError, match=r"with http:// or https:// \(got 'ftp://u:\*\*\*@h'\)"):
        ap.check_server_url("ftp://u:pw@h")


def test_clean_repo_url_reports_a_malformed_url_as_usage_error():
    with pytest.raises(UsageError, match=r"repository 'https://u:\*\*\*@\[::1/x' is not a valid URL: Invalid IPv6 URL"):
        ap.clean_repo_url("https://u:tok@[::1/x")
    with pytest.raises(UsageError, match="Port out of range"):
        ap.clean_repo_url("https://git.example.com:99999/x.git")
