"""The README's "Use on GitHub" / "Use on GitLab" sections and docs/ci.md are generated from the
actions, the templates' spec: headers and the examples (scripts/gen_ci_docs.py); they must be
up to date."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

from ci_support import ROOT

SCRIPT = ROOT / "scripts" / "gen_ci_docs.py"


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--check", "--root", str(root)],
                          capture_output=True, text=True, timeout=60)


def test_readme_and_docs_are_up_to_date() -> None:
    proc = _check(ROOT)
    assert proc.returncode == 0, proc.stderr + "\nrun: python scripts/gen_ci_docs.py"


def test_every_input_and_output_is_documented() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("<!-- BEGIN mlgate-ci-docs -->"): readme.index("<!-- END mlgate-ci-docs -->")]
    yaml = YAML(typ="safe", pure=True)
    for action in sorted((ROOT / "actions").glob("*/action.yml")):
        meta = yaml.load(action.read_text(encoding="utf-8"))
        assert f"`mlgate/mlgate/actions/{action.parent.name}`" in section
        for key in list(meta.get("inputs") or {}) + list(meta.get("outputs") or {}):
            assert f"| `{key}` |" in section
    for template in sorted((ROOT / "gitlab-templates" / "templates").glob("*.yml")):
        head = template.read_text(encoding="utf-8").split("\n---\n")[0]
        for key in yaml.load(head)["spec"]["inputs"]:
            assert f"| `{key}` |" in section
    assert "## Use on GitHub" in section and "## Use on GitLab" in section
    assert (ROOT / "examples" / "github" / ".github" / "workflows" / "mlops.yml").read_text(encoding="utf-8") in section
    assert (ROOT / "examples" / "gitlab" / ".gitlab-ci.yml").read_text(encoding="utf-8") in section
    for example in ("github-gitops/.github/workflows/mlgate-reconcile.yml", "gitlab-gitops/.gitlab-ci.yml"):
        assert (ROOT / "examples" / example).read_text(encoding="utf-8") in section


def test_a_changed_action_makes_the_docs_stale(tmp_path: Path) -> None:
    for name in ("actions", "gitlab-templates", "examples/github", "examples/gitlab", "examples/github-gitops",
                 "examples/gitlab-gitops", "docs"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy2(ROOT / "README.md", tmp_path / "README.md")
    assert _check(tmp_path).returncode == 0
    action = tmp_path / "actions" / "train" / "action.yml"
    action.write_text(action.read_text(encoding="utf-8").replace("Path of the repository config.",
                                                                 "Where the config lives."), encoding="utf-8")
    proc = _check(tmp_path)
    assert proc.returncode == 1
    assert "README.md is out of date" in proc.stderr and "docs/ci.md is out of date" in proc.stderr
