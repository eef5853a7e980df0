"""The layers hold (README "Design"): cli > bot > flows > edge > core, and the core does no I/O.

The contracts live in pyproject.toml (``[tool.importlinter]``); this runs import-linter's
``lint-imports`` on them, so a new import that breaks a layer fails ``make test``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    proc = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "BROKEN" not in out
    assert out.count("KEPT") >= 2, out[-2000:]


SRC = ROOT / "src" / "mlgate"
#: issue 9: a module, class or function past these sizes has more than one job
MAX_MODULE, MAX_CLASS, MAX_FUNCTION = 600, 300, 80


def _sizes() -> list[str]:
    import ast

    out = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        lines = text.count("\n")
        if lines > MAX_MODULE:
            out.append(f"{rel}: {lines} lines (module limit {MAX_MODULE})")
        source = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                size = node.end_lineno - node.lineno + 1
                limit = MAX_CLASS if isinstance(node, ast.ClassDef) else MAX_FUNCTION
                # a table of data (a literal the function only returns) may say so on its def line
                if size > limit and "size: table of data" not in source[node.lineno - 1]:
                    out.append(f"{rel}:{node.lineno}: {node.name} has {size} lines (limit {limit})")
    return out


def test_no_module_class_or_function_outgrows_one_job():
    assert _sizes() == []


def test_the_readme_design_tree_names_every_module_of_every_layer():
    """README "Design" lists each layer's modules and packages; a module added, moved or removed
    without the README following it fails here."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Design\n", 1)[1].split("\n## ", 1)[0]
    tree = section.split("```\n", 2)[1]
    named: dict[str, set[str]] = {}
    layer = None
    for line in tree.splitlines():
        m = re.match(r"^  (\w+)/\s", line)
        if m:
            layer = m.group(1)
            named[layer] = set()
        elif layer and line.startswith("    "):
            named[layer] |= {n.rstrip("/,") for n in re.findall(r"\b[\w]+(?:\.py|/)", line)}
    assert set(named) == {"core", "edge", "flows", "bot", "cli"}
    for layer, names in named.items():
        actual = {p.name + ("/" if p.is_dir() else "") for p in (SRC / layer).iterdir()
                  if p.name != "__init__.py" and p.name != "__pycache__"}
        listed = {n if n.endswith(".py") else n + "/" for n in names if n.endswith(".py") or (SRC / layer / n).is_dir()}
        if layer == "cli":
            continue  # the CLI is one thin module per command group, named in "Commands"
        assert listed == actual, f"README Design, {layer}/: missing {sorted(actual - listed)}, extra {sorted(listed - actual)}"
