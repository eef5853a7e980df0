"""``mlgate config extras`` as the CI setup calls it: one line of comma-separated extras, the
job's MLFLOW_TRACKING_URI taken into account, config errors located (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ci_support import ROOT

MLGATE = str(Path(sys.executable).parent / "mlgate")


def extras(cwd: Path, *args: str, uri: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGATE_"))}
    if uri is not None:
        env["MLFLOW_TRACKING_URI"] = uri
    return subprocess.run([MLGATE, "config", "extras", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def test_extras_of_the_examples_and_an_override(tmp_path: Path) -> None:
    wine = ROOT / "examples" / "wine"
    # the demo: the embedded store and an evaluation
    proc = extras(wine)
    assert (proc.returncode, proc.stdout) == (0, "local,evaluate\n"), proc.stderr
    # the same config against a tracking server: only the evaluation needs full MLflow
    proc = extras(wine, uri="http://127.0.0.1:5000")
    assert (proc.returncode, proc.stdout) == (0, "evaluate\n"), proc.stderr
    # the CI examples gate on logged metrics against a server: the base install, an empty line
    cfg = ROOT / "examples" / "github" / ".mlgate.yml"
    proc = extras(tmp_path, "-c", str(cfg), uri="http://127.0.0.1:5000")
    assert (proc.returncode, proc.stdout) == (0, "\n"), proc.stderr


def test_a_config_error_is_located_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "other.yml").write_text("model: m\nvalidate:\n  gates: 3\n", encoding="utf-8")
    proc = extras(tmp_path, "-c", "other.yml")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("other.yml:3:"), proc.stderr
    assert "Traceback" not in proc.stderr
