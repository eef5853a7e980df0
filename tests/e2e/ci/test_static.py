"""Static checks of the CI files: linters (actionlint, zizmor, check-jsonschema, shellcheck),
the metadata every action and template must carry, and the injection rules (no ``${{ }}`` in
a ``run:``, no ``$[[ inputs.* ]]`` in a GitLab ``script:``, names checked against a pattern)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from ci_support import ROOT, git, tool

ACTION_NAMES = ("setup", "setup-hosted", "train", "validate", "promote", "canary", "reconcile")
TEMPLATE_NAMES = ("train", "validate", "promote", "canary", "reconcile")
ACTIONS = [ROOT / "actions" / n / "action.yml" for n in ACTION_NAMES]
TEMPLATES = [ROOT / "gitlab-templates" / "templates" / f"{n}.yml" for n in TEMPLATE_NAMES]
WORKFLOWS = sorted((ROOT / "examples").glob("**/.github/workflows/*.yml"))
GITLAB_EXAMPLES = sorted((ROOT / "examples").glob("**/.gitlab-ci.yml"))
NAME_RE = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"

#: outputs each action must expose (the issue's list, as they apply)
REQUIRED_OUTPUTS = {
    "setup": {"mlgate-version", "python-path", "extras"},
    "setup-hosted": {"mlgate-version", "python-path", "extras"},
    "train": {"run-id", "model-version"},
    "validate": {"gates-passed", "model-version", "report-path"},
    "promote": {"promotion-url", "model-version"},
    "canary": set(),
    "reconcile": {"report", "moved", "in-step", "differs", "undecided"},
}
MLOPS_WORKFLOW = ROOT / "examples" / "github" / ".github" / "workflows" / "mlops.yml"
RECONCILE_WORKFLOW = ROOT / "examples" / "github-gitops" / ".github" / "workflows" / "mlgate-reconcile.yml"


def _load(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def _split_template(path: Path) -> tuple[str, str]:
    head, sep, body = path.read_text(encoding="utf-8").partition("\n---\n")
    assert sep, f"{path}: a template is a spec: document, then ---, then the jobs"
    return head + "\n", body


def _run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


def test_the_files_exist() -> None:
    assert all(p.is_file() for p in ACTIONS + TEMPLATES)
    assert sorted(p.relative_to(ROOT).as_posix() for p in WORKFLOWS) == [
        "examples/github-gitops/.github/workflows/mlgate-reconcile.yml", "examples/github/.github/workflows/mlops.yml"]
    assert sorted(p.relative_to(ROOT).as_posix() for p in GITLAB_EXAMPLES) == [
        "examples/gitlab-gitops/.gitlab-ci.yml", "examples/gitlab/.gitlab-ci.yml"]


# --------------------------------------------------------------------------- linters


def test_zizmor_offline_reports_nothing() -> None:
    proc = _run([tool("zizmor"), "--offline", "--format", "json", "actions/", "examples/"], cwd=ROOT)
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=1)[:4000]
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_zizmor_flags_an_expression_inside_run(tmp_path: Path) -> None:
    """The check above can fail: zizmor does flag the injection pattern we avoid."""
    bad = tmp_path / "action.yml"
    bad.write_text(
        "name: bad\ndescription: bad\ninputs:\n  model:\n    description: m\n    default: ''\n"
        "runs:\n  using: composite\n  steps:\n    - shell: bash\n      run: echo ${{ inputs.model }}\n",
        encoding="utf-8",
    )
    proc = _run([tool("zizmor"), "--offline", "--format", "json", str(tmp_path)])
    assert "template-injection" in proc.stdout


def test_actionlint_on_workflows_and_actions(tmp_path: Path) -> None:
    """actionlint checks workflows, and an action's metadata when a workflow uses it locally:
    a scratch repository whose workflow calls every action with its required inputs."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "actions", repo / "actions")
    wf_dir = repo / ".github" / "workflows"
    wf_dir.mkdir(parents=True)
    steps = ["      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2"]
    for name in ACTION_NAMES:
        steps.append(f"      - uses: ./actions/{name}")
        required = [k for k, v in (_load(repo / "actions" / name / "action.yml").get("inputs") or {}).items()
                    if v.get("required")]
        if required:
            steps.append("        with:")
            steps += [f"          {k}: staging" for k in required]
    (wf_dir / "all-actions.yml").write_text(
        "name: all\non: push\npermissions: {}\njobs:\n  all:\n    runs-on: ubuntu-latest\n    steps:\n"
        + "\n".join(steps) + "\n", encoding="utf-8")
    for wf in WORKFLOWS:
        shutil.copy2(wf, wf_dir / wf.name)
    git("init", "-q", cwd=repo)
    env = {"PATH": f"{Path(tool('shellcheck')).parent}:/usr/bin:/bin"}
    proc = _run([tool("actionlint"), "-color=false"], cwd=repo, env=env)
    assert all(name not in proc.stdout for name in ("all-actions.yml", *(wf.name for wf in WORKFLOWS)))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", ACTIONS, ids=ACTION_NAMES)
def test_action_schema(path: Path) -> None:
    proc = _run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_schema() -> None:
    proc = _run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gitlab_schema(tmp_path: Path) -> None:
    """Each template's spec: document and its jobs document are checked separately (the
    gitlab-ci schema describes both; it cannot read the two-document file at once)."""
    files = [str(p) for p in GITLAB_EXAMPLES]
    for path in TEMPLATES:
        head, body = _split_template(path)
        (tmp_path / f"{path.stem}.spec.yml").write_text(head, encoding="utf-8")
        (tmp_path / f"{path.stem}.jobs.yml").write_text(body, encoding="utf-8")
        files += [str(tmp_path / f"{path.stem}.spec.yml"), str(tmp_path / f"{path.stem}.jobs.yml")]
    proc = _run([tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", *files])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _run_blocks() -> list[tuple[str, str]]:
    """Every ``run:`` script of the actions and example workflows, as (where, script)."""
    out = []
    for path in ACTIONS:
        for i, step in enumerate(_load(path)["runs"]["steps"]):
            if "run" in step:
                out.append((f"{path.relative_to(ROOT)} step {i}", step["run"]))
    for path in WORKFLOWS:
        for job_name, job in _load(path)["jobs"].items():
            for i, step in enumerate(job.get("steps", [])):
                if "run" in step:
                    out.append((f"{path.relative_to(ROOT)} {job_name} step {i}", step["run"]))
    return out


def _script_blocks() -> list[tuple[str, str]]:
    out = []
    for path in TEMPLATES:
        _, body = _split_template(path)
        for job_name, job in YAML(typ="safe", pure=True).load(body).items():
            for key in ("before_script", "script", "after_script"):
                for i, line in enumerate(job.get(key) or []):
                    out.append((f"{path.relative_to(ROOT)} {job_name} {key}[{i}]", line))
    return out


def test_shellcheck_on_every_script(tmp_path: Path) -> None:
    """actionlint does not look into composite actions: shellcheck their run: scripts (bash, with
    the shared library) and the templates' scripts (POSIX sh, as GitLab runs them)."""
    files = []
    for n, (where, script) in enumerate(_run_blocks()):
        f = tmp_path / f"run{n}.bash"
        f.write_text(f"# {where}\n{script}", encoding="utf-8")
        files.append(f)
    sh_files = []
    for n, (where, script) in enumerate(_script_blocks()):
        f = tmp_path / f"script{n}.sh"
        f.write_text(f"# {where}\n{script}", encoding="utf-8")
        sh_files.append(f)
    lib = [ROOT / "actions" / "_lib" / "mlgate-ci.sh", ROOT / "actions" / "setup" / "install.sh"]
    # SC1091: the sourced library path is only known at run time; SC2154: variables come from env:
    proc = _run([tool("shellcheck"), "-s", "bash", "-e", "SC1091,SC2154", *map(str, files + lib)])
    assert proc.returncode == 0, proc.stdout
    proc = _run([tool("shellcheck"), "-s", "sh", "-e", "SC2154", *map(str, sh_files)])
    assert proc.returncode == 0, proc.stdout


# --------------------------------------------------------------------------- injection rules


def test_no_expression_inside_any_run_script() -> None:
    blocks = _run_blocks()
    assert len(blocks) >= len(ACTIONS)
    offenders = [where for where, script in blocks if "${{" in script]
    assert offenders == []


def test_no_input_interpolation_inside_any_gitlab_script() -> None:
    blocks = _script_blocks()
    assert len(blocks) >= len(TEMPLATES)
    offenders = [where for where, script in blocks if "$[[" in script]
    assert offenders == []
    # and inputs appear only in variables:, stage:, image: and a job's name
    for path in TEMPLATES:
        _, body = _split_template(path)
        jobs = YAML(typ="safe", pure=True).load(body)
        for job_name, job in jobs.items():
            for key, value in job.items():
                if key in ("variables", "stage", "image"):
                    continue
                assert "$[[" not in json.dumps(value), f"{path.name} {job_name}.{key} uses an input"


@pytest.mark.parametrize("path", ACTIONS, ids=ACTION_NAMES)
def test_every_name_input_is_checked_before_use(path: Path) -> None:
    """Closed-form inputs (model, environment, version) are checked by the first script that
    receives them, before mlgate is installed or run."""
    action = _load(path)
    inputs = action.get("inputs") or {}
    first = next(s for s in action["runs"]["steps"] if "run" in s)
    script = first["run"]
    for name, var in (("model", "MLGATE_MODEL"), ("environment", "MLGATE_ENVIRONMENT"), ("version", "MLGATE_VERSION")):
        if name in inputs:
            assert first["env"][var] == f"${{{{ inputs.{name} }}}}"
            check = re.search(rf'mlgate_(check|require) [^\n]*"\${var}"', script)
            assert check, f"{path}: {name} is not checked"
            assert check.start() < script.index("mlgate_ensure"), f"{path}: {name} is checked after installing"


@pytest.mark.parametrize("path", TEMPLATES, ids=TEMPLATE_NAMES)
def test_every_name_input_has_a_regex_and_a_script_check(path: Path) -> None:
    head, body = _split_template(path)
    inputs = _load_text(head)["spec"]["inputs"]
    script = "\n".join(s for _, s in _script_blocks() if path.name in _)
    for name in ("model", "environment", "version", "alias"):
        if name in inputs:
            assert inputs[name].get("regex"), f"{path.name}: input {name} has no regex"
    if "model" in inputs:
        assert inputs["model"]["regex"] == "^([A-Za-z0-9][A-Za-z0-9_.-]{0,62})?$"
        assert 'mlgate_check_name "model name" "$MLGATE_MODEL"' in script
    if "environment" in inputs:
        assert 'mlgate_check_name environment "$MLGATE_ENVIRONMENT"' in script


def _load_text(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


# --------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("path", ACTIONS, ids=ACTION_NAMES)
def test_action_metadata(path: Path) -> None:
    action = _load(path)
    assert action["name"].startswith("mlgate ")
    assert len(action["description"]) > 40
    assert set(action["branding"]) == {"icon", "color"}
    for key, spec in (action.get("inputs") or {}).items():
        assert spec.get("description"), f"input {key} has no description"
        assert spec.get("required") or "default" in spec, f"input {key}: optional inputs need a default"
    outputs = action.get("outputs") or {}
    assert REQUIRED_OUTPUTS[path.parent.name] <= set(outputs)
    for key, spec in outputs.items():
        assert spec.get("description") and spec.get("value"), f"output {key}"
    assert action["runs"]["using"] == "composite"


@pytest.mark.parametrize("path", TEMPLATES, ids=TEMPLATE_NAMES)
def test_template_spec(path: Path) -> None:
    head, _ = _split_template(path)
    inputs = _load_text(head)["spec"]["inputs"]
    for key, spec in inputs.items():
        assert spec.get("description"), f"{path.name}: input {key} has no description"
        assert spec.get("type") in ("string", "boolean", "number", "array")
        if "default" in spec:
            default = spec["default"]
            if spec.get("options"):
                assert default in spec["options"]
            if spec.get("regex") and isinstance(default, str):
                assert re.fullmatch(spec["regex"].strip("^$").join("^$"), default), f"{key} default vs regex"
    # closed sets carry options
    for key in ("when", "command"):
        if key in inputs and path.stem != "train":
            assert inputs[key].get("options"), f"{path.name}: {key} is a closed set"


@pytest.mark.parametrize("path", TEMPLATES, ids=TEMPLATE_NAMES)
def test_template_installs_this_release_into_a_virtual_environment(path: Path) -> None:
    """By default a template installs the mlgate of its own release (MLGATE_RELEASE, which must be
    pyproject's version) from the project the templates come from, at the release tag (there is no
    mlgate on the package index to pin); always into a virtual environment; extras as the config needs."""
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    head, body = _split_template(path)
    inputs = _load_text(head)["spec"]["inputs"]
    assert inputs["install"]["default"] == "" and inputs["extras"]["default"] == "auto"
    [job] = _load_text(body).values()
    assert job["variables"]["MLGATE_RELEASE"] == version
    assert job["variables"]["MLGATE_EXTRAS"] == "$[[ inputs.extras ]]"
    script = job["script"][0]
    assert 'spec=${MLGATE_INSTALL:-"mlgate @ git+${CI_SERVER_URL:-https://gitlab.com}/mlgate/mlgate.git@v$MLGATE_RELEASE"}' in script
    assert '"$base" -m venv "$venv"' in script and 'PATH="$venv/bin:$PATH"' in script
    assert 'mlgate config extras --config' in script
    # every pip install runs the virtual environment's Python, after PATH points at it
    installs = [m.start() for m in re.finditer(r"pip install", script)]
    assert installs and all(script.rfind('PATH="$venv/bin:$PATH"', 0, i) >= 0 for i in installs)
    assert all(line.strip().startswith("python -m pip install") for line in script.splitlines() if "pip install" in line)


@pytest.mark.parametrize(("spec", "extras", "want"), [
    ("mlgate @ git+https://gitlab.com/mlgate/mlgate.git@v1.2.0", "local",
     "mlgate[local] @ git+https://gitlab.com/mlgate/mlgate.git@v1.2.0"),
    ("git+https://gitlab.com/mlgate/mlgate.git@v1.2.0", "local,evaluate",
     "mlgate[local,evaluate] @ git+https://gitlab.com/mlgate/mlgate.git@v1.2.0"),
    ("/src/mlgate", "evaluate", "/src/mlgate[evaluate]"),
    ("./dist/mlgate-1.2.0-py3-none-any.whl", "local", "./dist/mlgate-1.2.0-py3-none-any.whl[local]"),
    ("mlgate==1.2.0", "local", "mlgate[local]==1.2.0"),
    ("mlgate", "evaluate", "mlgate[evaluate]"),
    ("mlgate==1.2.0", "", "mlgate==1.2.0"),
])
def test_extras_are_added_to_every_form_of_install(spec: str, extras: str, want: str, tmp_path: Path) -> None:
    """The same answer from the action's bash and the templates' POSIX sh."""
    install = (ROOT / "actions" / "setup" / "install.sh").read_text(encoding="utf-8")
    func = install[install.index("with_extras() {"): install.index("pip_install() {")]
    proc = _run(["bash", "-c", func + '\nwith_extras "$1" "$2"', "-", spec, extras], cwd=tmp_path)
    assert proc.stdout == want, proc.stderr
    template = (ROOT / "gitlab-templates" / "templates" / "train.yml").read_text(encoding="utf-8")
    func = template[template.index("      mlgate_with_extras() {"): template.index("      mlgate_install() {")]
    func = "\n".join(line[6:] for line in func.splitlines())
    proc = _run(["sh", "-c", func + '\nmlgate_with_extras "$1" "$2"', "-", spec, extras], cwd=tmp_path)
    assert proc.stdout == want, proc.stderr


def test_example_workflow_is_least_privilege() -> None:
    wf = _load(MLOPS_WORKFLOW)
    assert wf["permissions"] == {}
    triggers = wf.get("on") or wf.get(True)
    assert set(triggers) == {"pull_request", "push"}
    assert "pull_request_target" not in triggers
    for name, job in wf["jobs"].items():
        perms = job["permissions"]
        assert set(perms.values()) <= {"read", "write"}
        writes = {k for k, v in perms.items() if v == "write"}
        assert writes <= {"pull-requests"}, f"{name} writes {writes}"
        checkout = job["steps"][0]
        assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["persist-credentials"] is False
    assert [s.get("uses", "").split("@")[0] for s in wf["jobs"]["gate"]["steps"]] == [
        "actions/checkout", "mlgate/mlgate/actions/setup", "mlgate/mlgate/actions/train",
        "mlgate/mlgate/actions/validate"]
    promote = wf["jobs"]["promote-staging"]
    assert "github.event_name == 'push'" in promote["if"] and promote["environment"] == "staging"


def test_reconcile_example_runs_on_pushes_with_the_whole_history() -> None:
    """The GitOps repository's workflow: pushes to main, read-only, a full-history checkout
    without persisted credentials, then the reconcile action; runs never overlap."""
    wf = _load(RECONCILE_WORKFLOW)
    assert wf["permissions"] == {"contents": "read"}
    triggers = wf.get("on") or wf.get(True)
    assert triggers["push"] == {"branches": ["main"]} and "pull_request_target" not in triggers
    assert wf["concurrency"]["cancel-in-progress"] is False
    [job] = wf["jobs"].values()
    assert "permissions" not in job or set(job["permissions"].values()) <= {"read"}
    checkout, reconcile = job["steps"]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"] == {"fetch-depth": 0, "persist-credentials": False}
    assert reconcile["uses"] == "mlgate/mlgate/actions/reconcile@v1"
    action = _load(ROOT / "actions" / "reconcile" / "action.yml")
    assert "fetch-depth 0" in " ".join(action["description"].split())
    script = action["runs"]["steps"][0]["run"]
    assert "--is-shallow-repository" in script and 'mlgate reconcile "${MLGATE_ARGS[@]}"' in script


def test_reconcile_template_runs_on_the_default_branch_with_the_whole_history() -> None:
    _, body = _split_template(ROOT / "gitlab-templates" / "templates" / "reconcile.yml")
    job = _load_text(body)["mlgate-reconcile"]
    assert job["variables"]["GIT_DEPTH"] == 0
    assert job["rules"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]
    assert job["resource_group"]
    [script] = job["script"]
    assert 'mlgate reconcile "$@"' in script and '--check' in script and "--is-shallow-repository" in script


def test_remote_actions_are_pinned_to_a_full_sha() -> None:
    for path in ACTIONS + WORKFLOWS:
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.search(r"uses:\s*([^\s#]+)", line)
            if not m or m.group(1).startswith(("./", "mlgate/mlgate/")):
                continue
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", m.group(1)), f"{path}: {line.strip()}"


def test_canary_calls_mlgate_canary_and_never_pretends() -> None:
    action = (ROOT / "actions" / "canary" / "action.yml").read_text(encoding="utf-8")
    template = (ROOT / "gitlab-templates" / "templates" / "canary.yml").read_text(encoding="utf-8")
    assert 'mlgate canary "$MLGATE_CANARY_COMMAND" "${MLGATE_ARGS[@]}"' in action
    assert 'mlgate canary "$MLGATE_CANARY_COMMAND" "$@"' in template
    for text in (action, template):
        calls = [line for line in text.splitlines() if "mlgate canary " in line and not line.strip().startswith("#")]
        assert calls and all("||" not in line for line in calls)
        assert "exit 0" not in text


@pytest.mark.parametrize("value", ['x"; echo INJECTED >&2; echo "', "$(id)", "a\n::set-output name=x::y", "../etc"])
def test_the_name_check_prints_hostile_values_literally(value: str, tmp_path: Path) -> None:
    """The bash check every action runs first: refuses, prints the value once, escaped for a
    workflow command (a newline cannot start a new command), and never executes it."""
    script = 'source "$LIB"; mlgate_check "model name" "$VALUE" "$MLGATE_NAME_RE"; echo accepted'
    proc = _run(["bash", "-c", script], env={"LIB": str(ROOT / "actions" / "_lib" / "mlgate-ci.sh"), "VALUE": value,
                                             "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert proc.returncode == 2 and "accepted" not in proc.stdout
    [line] = proc.stdout.splitlines()
    escaped = value.replace("%", "%25").replace("\n", "%0A")
    assert line == f"::error title=mlgate: invalid model name::invalid model name '{escaped}': it must match {NAME_RE}"
    assert "INJECTED" not in proc.stderr and "uid=" not in proc.stdout + proc.stderr
    # and the same value is refused by the templates' POSIX check (GitLab)
    template = (ROOT / "gitlab-templates" / "templates" / "validate.yml").read_text(encoding="utf-8")
    func = template[template.index("      mlgate_check_name() {"): template.index("      mlgate_install() {")]
    func = "\n".join(line[6:] for line in func.splitlines())
    proc = _run(["sh", "-c", func + '\nmlgate_check_name "model name" "$VALUE"; echo accepted'],
                env={"VALUE": value, "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"mlgate: invalid model name '{value}': it must match {NAME_RE}\n"


@pytest.mark.parametrize("value", ["wine-classifier", "m_1.v2", "A" * 63, ""])
def test_the_name_check_accepts_names(value: str) -> None:
    script = 'source "$LIB"; mlgate_check "model name" "$VALUE" "$MLGATE_NAME_RE"; echo accepted'
    proc = _run(["bash", "-c", script], env={"LIB": str(ROOT / "actions" / "_lib" / "mlgate-ci.sh"), "VALUE": value,
                                             "PATH": "/usr/bin:/bin"})
    assert proc.stdout == "accepted\n"
