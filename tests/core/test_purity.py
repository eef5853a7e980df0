"""The pure core imports no I/O adapter (design.md: core modules never import edge modules)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "mlgate"
CORE = ["config", "gates", "report", "manifests", "commands", "policy", "ci", "events", "canary", "argo_plan", "ci_publish", "urls"]
FORBIDDEN = {
    "mlflow", "httpx", "requests", "subprocess", "socket", "github", "gitlab", "sqlalchemy", "hera",
    "mlgate.registry", "mlgate.gitops", "mlgate.forges", "mlgate.bot", "mlgate.argo", "mlgate.pipeline",
    "mlgate.prometheus", "mlgate.cli", "urllib.request",
}


@pytest.mark.parametrize("name", [n for n in CORE if (SRC / f"{n}.py").exists()])
def test_core_module_imports_no_adapter(name):
    tree = ast.parse((SRC / f"{name}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    bad = {m for m in imported for f in FORBIDDEN if m == f or m.startswith(f + ".")}
    assert not bad, f"{name}.py imports edge modules {sorted(bad)}"
