#!/usr/bin/env python3
"""Generate the "Use on GitHub" / "Use on GitLab" documentation from the CI files themselves.

Inputs and outputs come from ``actions/*/action.yml`` and from the ``spec:`` header of
``gitlab-templates/templates/*.yml`` (outputs of a template: its ``# output: NAME: text``
comment lines, which describe its dotenv report); the files to add are the examples in
``examples/github`` and ``examples/gitlab`` (the model repository) and ``examples/github-gitops``
and ``examples/gitlab-gitops`` (the GitOps repository: ``mlgate reconcile``). The text goes to ``docs/ci.md`` and to README.md
between ``<!-- BEGIN mlgate-ci-docs -->`` and ``<!-- END mlgate-ci-docs -->``.

    python scripts/gen_ci_docs.py           # write docs/ci.md and the README section
    python scripts/gen_ci_docs.py --check   # exit 1 naming the files that are out of date

Exit codes: 0 up to date (or written), 1 out of date (--check), 2 README without the markers.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ACTIONS = ("setup", "setup-hosted", "train", "validate", "promote", "canary", "reconcile")
TEMPLATES = ("train", "validate", "promote", "canary", "reconcile")
BEGIN = "<!-- BEGIN mlgate-ci-docs -->"
END = "<!-- END mlgate-ci-docs -->"
GITHUB_EXAMPLE = "examples/github/.github/workflows/mlops.yml"
GITLAB_EXAMPLE = "examples/gitlab/.gitlab-ci.yml"
GITHUB_GITOPS_EXAMPLE = "examples/github-gitops/.github/workflows/mlgate-reconcile.yml"
GITLAB_GITOPS_EXAMPLE = "examples/gitlab-gitops/.gitlab-ci.yml"
OWNER_REPO = "mlgate/mlgate"
_OUTPUT_LINE = re.compile(r"^#\s*output:\s*([A-Za-z0-9_]+):\s*(.+)$")


def _yaml() -> Any:
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True)


def load_action(root: Path, name: str) -> dict[str, Any]:
    """The parsed ``actions/NAME/action.yml``."""
    return _yaml().load((root / "actions" / name / "action.yml").read_text(encoding="utf-8"))


def load_template(root: Path, name: str) -> tuple[dict[str, Any], dict[str, str], str]:
    """``(spec inputs, outputs, description)`` of ``gitlab-templates/templates/NAME.yml``.

    The description is the first comment paragraph of the file; outputs are its
    ``# output: NAME: text`` lines.
    """
    text = (root / "gitlab-templates" / "templates" / f"{name}.yml").read_text(encoding="utf-8")
    head, _, _body = text.partition("\n---\n")
    spec = _yaml().load(head) or {}
    outputs: dict[str, str] = {}
    desc: list[str] = []
    in_desc = True
    for line in head.splitlines():
        if not line.startswith("#"):
            break
        m = _OUTPUT_LINE.match(line)
        if m:
            outputs[m.group(1)] = m.group(2).strip()
            in_desc = False
        elif in_desc:
            stripped = line.lstrip("#").strip()
            if stripped.startswith("Outputs"):
                in_desc = False
            else:
                desc.append(stripped)
    return (spec.get("spec") or {}).get("inputs") or {}, outputs, " ".join(desc)


def _cell(value: Any) -> str:
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def _code(value: Any) -> str:
    if value is None:
        return "(required)"
    if isinstance(value, bool):
        value = "true" if value else "false"
    text = str(value)
    if text == "":
        return '`""`'
    return "`" + text.replace("`", "'") + "`"


def _yaml_block(root: Path, rel: str) -> str:
    text = (root / rel).read_text(encoding="utf-8")
    return "```yaml\n" + text + ("" if text.endswith("\n") else "\n") + "```\n\n"


def github_section(root: Path) -> str:
    out = io.StringIO()
    w = out.write
    example = (root / GITHUB_EXAMPLE).read_text(encoding="utf-8")
    w("## Use on GitHub\n\n")
    w(f"Add one file, `.github/workflows/mlops.yml` (a copy of [`{GITHUB_EXAMPLE}`]({GITHUB_EXAMPLE})), to the\n")
    w("repository that holds `.mlgate.yml`. Pull requests train and gate a new model version; the job\n")
    w("summary and one pull-request comment (updated on every push, found by a hidden marker) show the\n")
    w("gate table and a chart of candidate against champion; each failed gate is an error annotation.\n")
    w("`/promote` in a pull request is handled by the mlgate bot; a push to `main` can promote to staging.\n\n")
    w("```yaml\n" + example + ("" if example.endswith("\n") else "\n") + "```\n\n")
    w("**Versions.** `uses: mlgate/mlgate/actions/train@v1` follows the `v1` major tag; pin a full commit\n")
    w("SHA (`@<40 hex digits> # v1.2.3`) when your policy requires immutable references (zizmor's\n")
    w("`unpinned-uses` audit does). `actions/setup` installs mlgate from the action's own checkout, so\n")
    w("every action of one ref runs the same mlgate code; the other actions install it themselves when\n")
    w("`setup` did not run.\n\n")
    w("**Permissions and secrets.** The workflow sets `permissions: {}` and grants per job:\n")
    w("`contents: read` to check out, `pull-requests: write` for the gate comment (`validate`'s `token`,\n")
    w("default `github.token`; on pull requests from forks the token is read-only and the comment is\n")
    w("skipped with a warning). Repository variable `MLFLOW_TRACKING_URI` points at your tracking\n")
    w("server; secrets `MLFLOW_TRACKING_TOKEN` (if the server needs one) and `MLGATE_GITOPS_TOKEN`\n")
    w("(push access to the GitOps repository, passed to `promote` as `gitops-token`). Inputs reach the\n")
    w("scripts only through `env:`; names are checked against `^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`.\n\n")
    w("**Python and extras.** `setup` always installs into a virtual environment (never the runner's own\n")
    w("Python, which only creates it) and puts its `bin/` on the `PATH` of later steps. It installs the\n")
    w("base (`mlflow-skinny`), asks `mlgate config extras`, and adds `mlgate[local]` (embedded or\n")
    w("database store) or `mlgate[evaluate]` (`validate.evaluation`) only when the config needs them;\n")
    w("`extras:` overrides, `install:` installs another mlgate (a requirement, a path, a wheel). `setup`\n")
    w("uses no other action, so `act` runs it offline (see \"Try it locally\"); `setup-hosted` adds\n")
    w("`actions/setup-python` (`python-version`, default 3.11) and `actions/cache` of pip's downloads on\n")
    w("GitHub-hosted runners, in place of `setup`.\n\n")
    w("**In the GitOps repository.** With gitops mode `pull-request` and no mlgate bot, the registry alias\n")
    w("follows the merge of a promotion pull request through `actions/reconcile` (`mlgate reconcile`) in\n")
    w("the GitOps repository's own workflow, on pushes to the branch the deployment tool watches: add\n")
    w(f"`.github/workflows/mlgate-reconcile.yml` (a copy of [`{GITHUB_GITOPS_EXAMPLE}`]({GITHUB_GITOPS_EXAMPLE}))\n")
    w("there. The checkout needs the whole history (`fetch-depth: 0`); `check: 'true'` only reports.\n\n")
    w(_yaml_block(root, GITHUB_GITOPS_EXAMPLE))
    for name in ACTIONS:
        action = load_action(root, name)
        w(f"### `{OWNER_REPO}/actions/{name}`: {action['name']}\n\n")
        w(_cell(action["description"]) + "\n\n")
        inputs = action.get("inputs") or {}
        if inputs:
            w("| Input | Default | Description |\n|---|---|---|\n")
            for key, spec in inputs.items():
                default = None if spec.get("required") and "default" not in spec else spec.get("default", "")
                w(f"| `{key}` | {_code(default)} | {_cell(spec.get('description', ''))} |\n")
            w("\n")
        outputs = action.get("outputs") or {}
        if outputs:
            w("| Output | Description |\n|---|---|\n")
            for key, spec in outputs.items():
                w(f"| `{key}` | {_cell(spec.get('description', ''))} |\n")
            w("\n")
    return out.getvalue()


def gitlab_section(root: Path) -> str:
    out = io.StringIO()
    w = out.write
    example = (root / GITLAB_EXAMPLE).read_text(encoding="utf-8")
    w("## Use on GitLab\n\n")
    w(f"Add one file, `.gitlab-ci.yml` (a copy of [`{GITLAB_EXAMPLE}`]({GITLAB_EXAMPLE})), to the project that\n")
    w("holds `.mlgate.yml`. Merge request pipelines train and gate a new model version; the job log, the\n")
    w("report artifact and one merge-request note (updated on every push) show the gate table; a failed\n")
    w("gate fails `mlgate-validate` naming the gate and by how much. `gates_passed` and `model_version`\n")
    w("reach later jobs through a dotenv report.\n\n")
    w("```yaml\n" + example + ("" if example.endswith("\n") else "\n") + "```\n\n")
    w("**Including the templates.** They live in `gitlab-templates/templates/<name>.yml`, the layout of a\n")
    w("CI/CD catalog project, so they work three ways, each with `inputs:`:\n\n")
    w("- `include: project: mlgate/mlgate` with `ref:` and `file: /gitlab-templates/templates/<name>.yml`\n")
    w("  (a mirror of mlgate on your GitLab instance);\n")
    w("- `include: remote: https://<raw URL of mlgate at a tag or SHA>/gitlab-templates/templates/<name>.yml`;\n")
    w("- as catalog components: publish `gitlab-templates/` as its own project (its `templates/` folder is\n")
    w("  then at the root) and `include: component: $CI_SERVER_FQDN/<group>/<project>/<name>@<version>`.\n\n")
    w("**Versions.** `ref: v1` follows mlgate's major tag; pin a full commit SHA for an immutable include.\n")
    w("Each template installs mlgate into a virtual environment (`.mlgate-venv` in the job's directory,\n")
    w("never the image's own Python): by default the mlgate of the template's own release (`MLGATE_RELEASE`\n")
    w("in the job), `mlgate @ git+$CI_SERVER_URL/mlgate/mlgate.git@v<release>` from the project the\n")
    w("templates come from; `install:` (or the CI/CD variable `MLGATE_INSTALL`) installs another one (a\n")
    w("requirement, a path, a wheel). The base first, then the extras `mlgate config extras` names\n")
    w("(`extras:` overrides). `include: local:` works too, with the templates copied into your project;\n")
    w("\"Try it locally\" runs the `project:` includes offline with gitlab-ci-local.\n\n")
    w("**Variables and secrets.** `MLFLOW_TRACKING_URI` (your tracking server), `MLGATE_GITLAB_TOKEN`\n")
    w("(masked: a project access token with the `api` scope and at least the Reporter role, for the merge\n")
    w("request note; `CI_JOB_TOKEN` cannot write notes, and without a token the note is skipped with a\n")
    w("log line), `MLGATE_GITOPS_TOKEN` (masked: push access to the GitOps repository). Inputs are used\n")
    w("only in `variables:` (never inside `script:`); names have a `regex:` that GitLab checks when the\n")
    w("pipeline is created, and the scripts check them again.\n\n")
    w("**In the GitOps project.** With gitops mode `pull-request` and no mlgate bot, the registry alias\n")
    w("follows the merge of a promotion merge request through the `reconcile` template (`mlgate reconcile`)\n")
    w("in the GitOps project's own pipeline, on pushes to its default branch (the job sets `GIT_DEPTH: 0`):\n")
    w(f"a copy of [`{GITLAB_GITOPS_EXAMPLE}`]({GITLAB_GITOPS_EXAMPLE}), or include the template in yours.\n\n")
    w(_yaml_block(root, GITLAB_GITOPS_EXAMPLE))
    for name in TEMPLATES:
        inputs, outputs, desc = load_template(root, name)
        w(f"### `gitlab-templates/templates/{name}.yml`\n\n")
        if desc:
            w(_cell(desc) + "\n\n")
        w("| Input | Type | Default | Description |\n|---|---|---|---|\n")
        for key, spec in inputs.items():
            spec = spec or {}
            kind = spec.get("type", "string")
            extra = ""
            if spec.get("options"):
                extra = " One of: " + ", ".join(_code(o) for o in spec["options"]) + "."
            elif spec.get("regex"):
                extra = f" Must match `{spec['regex']}`."
            default = spec["default"] if "default" in spec else None
            w(f"| `{key}` | {kind} | {_code(default)} | {_cell(spec.get('description', ''))}{extra} |\n")
        w("\n")
        if outputs:
            w("| Output (dotenv) | Description |\n|---|---|\n")
            for key, text in outputs.items():
                w(f"| `{key}` | {_cell(text)} |\n")
            w("\n")
    return out.getvalue()


def render(root: Path = ROOT) -> str:
    """The whole generated section (both forges), ending with a newline."""
    return github_section(root) + gitlab_section(root)


def docs_page(section: str) -> str:
    return (
        "# mlgate in CI\n\n"
        "<!-- Generated by scripts/gen_ci_docs.py from actions/, gitlab-templates/ and examples/: "
        "edit those and run `python scripts/gen_ci_docs.py`. -->\n\n" + section
    )


def replace_between_markers(readme: str, section: str) -> str | None:
    """README text with the section between the markers replaced, or None without the markers."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        return None
    return readme[: start + len(BEGIN)] + "\n" + section + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report out-of-date files, write nothing")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    root: Path = args.root
    section = render(root)
    wanted = {root / "docs" / "ci.md": docs_page(section)}
    readme_path = root / "README.md"
    readme = readme_path.read_text(encoding="utf-8") if readme_path.exists() else ""
    new_readme = replace_between_markers(readme, section)
    if new_readme is not None:
        wanted[readme_path] = new_readme
    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for p in stale:
            print(f"{p.relative_to(root)} is out of date: run python scripts/gen_ci_docs.py", file=sys.stderr)
    else:
        for p in stale:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(wanted[p], encoding="utf-8")
            print(f"wrote {p.relative_to(root)}")
        stale = []
    if new_readme is None:
        print(f"{readme_path.relative_to(root)}: the markers {BEGIN} and {END} are missing", file=sys.stderr)
        return 2
    return 1 if stale else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
