"""README "Try it locally", run exactly as written: the commands are read from README.md (so the
docs and this test cannot drift) and run with bash on this host, offline except for pip, with no
Docker daemon: act's ``-self-hosted`` platform and gitlab-ci-local's ``--force-shell-executor``
take the example model repositories through train → validate → promote to a local bare GitOps
repository, against the tests' real ``mlflow server``.

The README's first block (a scratch folder, an export of mlgate, a tracking server) is what this
test provides itself: ``TRY`` is a temporary folder, ``MLGATE_SRC`` a copy of this working tree
as ``git archive`` exports it, ``MLFLOW_TRACKING_URI`` the ``mlflow_server`` fixture.

Checked besides the jobs passing and the promotion commit: nothing is installed outside a virtual
environment (the runner's Python and the user site are unchanged, every job's virtual environment
lies in the run's temporary folders), act fetches no remote action (issue 11), and with no
evaluation and a tracking server only mlgate's base set is installed: mlflow-skinny, never full
MLflow, Flask or pandas (issue 12).
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sysconfig
from pathlib import Path

import pytest

from ci_support import ROOT, git, tool

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
MODEL = "threshold-classifier"


def readme_block(name: str) -> str:
    """The ``sh`` block after ``<!-- try-locally: NAME -->`` in README.md's "Try it locally"."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Try it locally\n"):]
    section = section[: section.index("\n## ", 1)]
    m = re.search(rf"<!-- try-locally: {re.escape(name)} -->\n```sh\n(.*?)```\n", section, re.S)
    assert m, f'README.md "Try it locally" has no block {name!r}'
    return m.group(1)


def export_of_this_tree(dest: Path) -> Path:
    """What ``git archive HEAD | tar -x`` gives, from the working tree (uncommitted changes included)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("tests/", "node_modules/", "bench/", "docs/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def site_snapshot(runner_bin: Path) -> dict[str, frozenset[str]]:
    """The entries of every site-packages a pip install outside a virtual environment would write:
    the runner's Python (first on PATH), the user site, the system Python's."""
    runner_site = subprocess.run([str(runner_bin / "python3"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                 check=True, capture_output=True, text=True).stdout.strip()
    folders = {runner_site, site.getusersitepackages(), "/usr/local/lib/python3/dist-packages",
               "/usr/lib/python3/dist-packages", sysconfig.get_path("purelib", vars={"base": "/usr/local"})}
    return {f: frozenset(os.listdir(f)) if os.path.isdir(f) else frozenset() for f in sorted(folders)}


def installed_by_pip(log: str) -> set[str]:
    """Distribution names pip reported as installed ("Successfully installed a-1.0 b-2.0")."""
    names = set()
    for line in re.findall(r"Successfully installed (.+)", log):
        for item in line.split():
            names.add(item.rsplit("-", 1)[0].lower().replace("_", "-"))
    return names


def assert_base_set_only(log: str) -> None:
    assert ".mlgate.yml needs the extras: none (the base install)" in log
    names = installed_by_pip(log)
    assert "mlflow-skinny" in names, sorted(names)
    assert not names & {"mlflow", "flask", "pandas", "scikit-learn", "scipy"}, sorted(names & {"mlflow", "flask", "pandas"})


def assert_venvs_inside(log: str, *roots: Path) -> list[str]:
    venvs = re.findall(r"Creating the virtual environment (\S+) with", log)
    assert venvs, "no job created a virtual environment"
    for venv in venvs:
        assert any(Path(venv).resolve().is_relative_to(r.resolve()) for r in roots), f"{venv} is outside {roots}"
    return venvs


@pytest.fixture(scope="module")
def tried(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str, runner_python: Path,
          pip_offline: dict[str, str]) -> dict[str, str]:
    """README step 1 as the test provides it, then step 2 run exactly as written; the environment
    steps 3 and 4 run in (pip: the run's wheelhouse and no index, the ``pip_offline`` fixture)."""
    try_dir = tmp_path_factory.mktemp("try")
    src = export_of_this_tree(try_dir / "mlgate")
    tools = try_dir / "tools"
    tools.mkdir()
    for name in ("act", "gitlab-ci-local"):
        (tools / name).symlink_to(tool(name))
    # the runner's Python first on PATH: a throwaway virtual environment (it must stay unchanged)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "GITLAB_", "CI_", "MLGATE_", "MLFLOW_", "RUNNER_", "ACT", "GCL_",
                                "VIRTUAL_ENV", "PYTHON"))}
    env.update(PATH=f"{runner_python}:{tools}:/usr/bin:/bin", TRY=str(try_dir), MLGATE_SRC=str(src),
               MLFLOW_TRACKING_URI=mlflow_server, XDG_CACHE_HOME=str(try_dir / "cache"),
               PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip"),
               PIP_DISABLE_PIP_VERSION_CHECK="1", **pip_offline)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_block("repositories")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return env


def run_block(name: str, env: dict[str, str], log: Path, timeout: int) -> tuple[int, str]:
    proc = subprocess.run(["bash", "-eu", "-c", readme_block(name)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    log.write_text(out, encoding="utf-8")
    return proc.returncode, out


def promotions(gitops: Path) -> list[str]:
    return git("log", "--format=%H %s", "main", "--", "staging/inferenceservice.yaml", cwd=gitops).splitlines()


def staging_version(uri: str) -> str:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri).get_model_version_by_alias(MODEL, "staging").version


def test_act_runs_the_github_example_offline_into_a_virtual_environment(tried: dict[str, str],
                                                                        runner_python: Path) -> None:
    try_dir, gitops = Path(tried["TRY"]), Path(tried["TRY"]) / "deployments.git"
    before, commits = site_snapshot(runner_python), promotions(gitops)

    rc, log = run_block("act", tried, try_dir / "act.log", timeout=900)

    assert rc == 0, log[-6000:]
    assert log.count("🏁  Job succeeded") == 2, log[-3000:]  # gate, then promote-staging
    # no remote action was fetched: the published name maps to the export, checkout is skipped
    assert "LocalRepositoryCache not matched" not in log and "git clone" not in log, "act fetched a remote action"
    assert "actions/setup-python" not in log and "actions/cache@" not in log
    assert f"✅ mlgate gates passed: {MODEL} v" in log
    version = re.findall(r"::set-output:: model-version=(\d+)", log)[-1]
    # a promotion commit landed in the GitOps repository, and the alias followed
    new = promotions(gitops)
    assert len(new) == len(commits) + 1 and new[0].endswith(f"Promote {MODEL} to version {version} in staging"), new[:2]
    assert staging_version(tried["MLFLOW_TRACKING_URI"]) == version
    # always a virtual environment (under act's temporary folder), the base set only
    assert len(assert_venvs_inside(log, Path(tried["XDG_CACHE_HOME"]))) == 2
    assert_base_set_only(log)
    assert site_snapshot(runner_python) == before, "something was installed outside a virtual environment"


def test_gitlab_ci_local_runs_the_gitlab_example_offline_into_a_virtual_environment(tried: dict[str, str],
                                                                                    runner_python: Path) -> None:
    try_dir, gitops = Path(tried["TRY"]), Path(tried["TRY"]) / "deployments.git"
    before, commits = site_snapshot(runner_python), promotions(gitops)

    rc, log = run_block("gitlab-ci-local", tried, try_dir / "gitlab-ci-local.log", timeout=900)

    assert rc == 0, log[-6000:]
    for job in ("mlgate-train", "mlgate-validate", "mlgate-promote-staging"):
        assert re.search(rf"PASS\s+{job}\b", log), f"{job} did not pass:\n{log[-4000:]}"
    assert f"Installing {tried['MLGATE_SRC']} into" in log  # MLGATE_INSTALL: the export, not the release tag
    project = try_dir / "gitlab"
    artifacts = project / ".gitlab-ci-local" / "artifacts"
    version = (artifacts / "mlgate-promote-staging" / ".gitlab-ci-reports" / "dotenv" / "mlgate-promote.env")
    promoted = dict(line.split("=", 1) for line in version.read_text(encoding="utf-8").splitlines() if line)
    new = promotions(gitops)
    assert len(new) == len(commits) + 1 and new[0].split()[0] == promoted["promotion_commit"], new[:2]
    assert staging_version(tried["MLFLOW_TRACKING_URI"]) == promoted["model_version"]
    # each job's virtual environment lies in its build folder, inside the project
    assert_venvs_inside(log, project)
    assert not Path("/builds").exists() or not any(Path("/builds").iterdir()), "a job wrote outside its project"
    assert_base_set_only(log)
    assert site_snapshot(runner_python) == before, "something was installed outside a virtual environment"


def test_the_setup_action_graph_references_no_remote_action() -> None:
    """What act reads for the GitHub example: every ``uses:`` of the workflow and of each mlgate
    action it uses, recursively, is actions/checkout (which act skips for the repository itself)
    or an mlgate action; actions/setup-hosted is the only action with setup-python and cache."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    wf = yaml.load((ROOT / "examples" / "github" / ".github" / "workflows" / "mlops.yml").read_text(encoding="utf-8"))
    seen: set[str] = set()
    todo = [s["uses"] for job in wf["jobs"].values() for s in job["steps"] if "uses" in s]
    while todo:
        uses = todo.pop()
        if uses in seen:
            continue
        seen.add(uses)
        if uses.startswith("actions/checkout@"):
            continue
        assert uses.startswith("mlgate/mlgate/actions/"), f"the example reaches the remote action {uses}"
        name = uses.split("/")[3].split("@")[0]
        action = yaml.load((ROOT / "actions" / name / "action.yml").read_text(encoding="utf-8"))
        todo += [s["uses"] for s in action["runs"]["steps"] if "uses" in s]
    assert {u.split("@")[0] for u in seen} >= {"mlgate/mlgate/actions/setup", "mlgate/mlgate/actions/promote"}
    hosted = (ROOT / "actions" / "setup-hosted" / "action.yml").read_text(encoding="utf-8")
    assert "uses: actions/setup-python@" in hosted and "uses: actions/cache@" in hosted
    assert "../setup/install.sh" in hosted  # one install script for both


def test_install_script_never_installs_outside_a_virtual_environment(tmp_path: Path, runner_python: Path) -> None:
    """actions/setup's script with extras "none" and a stand-in package: it creates the virtual
    environment, installs there, puts its bin first on GITHUB_PATH, and leaves the runner's Python alone."""
    pkg = tmp_path / "pkg"
    (pkg / "mlgate").mkdir(parents=True)
    (pkg / "mlgate" / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "setup.py").write_text(
        "from setuptools import setup\nsetup(name='mlgate', version='9.9', packages=['mlgate'],"
        " entry_points={'console_scripts': ['mlgate=mlgate:main']})\n", encoding="utf-8")
    (pkg / "mlgate" / "__init__.py").write_text("def main():\n    print('mlgate, version 9.9')\n", encoding="utf-8")
    before = site_snapshot(runner_python)
    files = {k: tmp_path / k.lower() for k in ("GITHUB_PATH", "GITHUB_ENV", "GITHUB_OUTPUT")}
    env = {"PATH": f"{runner_python}:/usr/bin:/bin", "HOME": str(tmp_path), "RUNNER_TEMP": str(tmp_path / "tmp"),
           "MLGATE_INSTALL": str(pkg), "MLGATE_EXTRAS": "none",
           "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip"),
           **{k: str(v) for k, v in files.items()}}
    proc = subprocess.run(["bash", str(ROOT / "actions" / "setup" / "install.sh")], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    venv = tmp_path / "tmp" / "mlgate-venv"
    assert files["GITHUB_PATH"].read_text(encoding="utf-8") == f"{venv}/bin\n"
    assert f"VIRTUAL_ENV={venv}" in files["GITHUB_ENV"].read_text(encoding="utf-8")
    out = files["GITHUB_OUTPUT"].read_text(encoding="utf-8")
    assert "mlgate-version=9.9\n" in out and f"python-path={venv}/bin/python\n" in out and "extras=\n" in out
    assert (venv / "bin" / "mlgate").exists()
    assert site_snapshot(runner_python) == before
