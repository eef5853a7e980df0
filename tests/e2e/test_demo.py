"""`make demo`'s script on a fresh copy of the wine example, twice (it must be re-runnable)."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_demo(workdir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_", "CI_", "MLFLOW_"))}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return subprocess.run(["bash", str(workdir / "demo.sh")], env=env, capture_output=True, text=True, timeout=600)


def registry_rows(db: Path):
    con = sqlite3.connect(db)
    try:
        versions = con.execute("select version from model_versions where name='wine-classifier'").fetchall()
        aliases = dict(con.execute("select alias, version from registered_model_aliases where name='wine-classifier'").fetchall())
        gates = dict(con.execute(
            "select version, value from model_version_tags where name='wine-classifier' and key='mlgate.gates'").fetchall())
    finally:
        con.close()
    return sorted(int(v) for (v,) in versions), aliases, gates


def test_demo_runs_end_to_end_and_again(tmp_path):
    work = tmp_path / "wine"
    shutil.copytree(ROOT / "examples" / "wine", work, ignore=shutil.ignore_patterns(".mlgate", "__pycache__"))

    first = run_demo(work)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    assert "| Metric | Candidate v2 | Champion v1 | Delta | Threshold | Result |" in out
    assert "promoted wine-classifier v1 to production" in out
    # the training script measures accuracy on the rows the gates score: one number, not two
    for model, version in (("tree", 1), ("logistic", 2)):
        trained = re.search(rf"trained {model} on 124 rows: accuracy_score (\S+) on the 54 held-out rows", out)
        assert trained, out
        table = out[out.index(f"| Metric | Candidate v{version} |"):]
        gated = re.search(r"^\| accuracy_score \| (\S+) \|", table, re.M)
        assert gated and gated.group(1) == trained.group(1), (trained.group(0), gated and gated.group(0))
    # the promotion diff changes only the model URI line
    diff = out[out.index("diff --git"):]
    changed = [l for l in diff.splitlines() if l.startswith(("+", "-")) and not l.startswith(("+++", "---"))]
    assert len(changed) == 2 and all("storageUri:" in l for l in changed), changed

    versions, aliases, gates = registry_rows(work / ".mlgate" / "mlflow.db")
    assert versions == [1, 2]
    assert aliases["champion"] == 1 and aliases["staging"] == 2
    assert set(gates) == {1, 2} and set(gates.values()) == {"passed"}

    second = run_demo(work)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "reusing .mlgate/gitops.git" in second.stdout
    versions, aliases, gates = registry_rows(work / ".mlgate" / "mlflow.db")
    assert versions == [1, 2, 3, 4]
    assert aliases["champion"] == 3 and aliases["staging"] == 4
    assert len(gates) == 4
