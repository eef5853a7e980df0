"""CLI start-up: `mlgate --help` and `mlgate config check` against `mlflow --help`, cold processes.

Run: `make bench` (or `.venv/bin/python bench/cli_startup.py [--rounds N]`).

Each round runs the three commands once, in rotating order, as fresh processes; the
medians and the ratios against `mlflow --help` (the peer, measured in the same run) are
printed. Goal (issue 2): `mlgate --help` at most 5 % of `mlflow --help`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    mlgate = shutil.which("mlgate", path=str(BIN)) or "mlgate"
    mlflow = shutil.which("mlflow", path=str(BIN)) or "mlflow"
    commands = {
        "mlgate --help": [mlgate, "--help"],
        "mlgate config check": [mlgate, "config", "check", "examples/wine/.mlgate.yml"],
        "mlflow --help": [mlflow, "--help"],
    }
    for cmd in commands.values():  # warm the page cache once
        timed(cmd)
    samples: dict[str, list[float]] = {k: [] for k in commands}
    names = list(commands)
    for i in range(args.rounds):
        order = names[i % len(names):] + names[: i % len(names)]
        for name in order:
            samples[name].append(timed(commands[name]))
    peer = statistics.median(samples["mlflow --help"])
    print(f"{'command':<24}{'median s':>10}{'min s':>9}{'max s':>9}{'vs mlflow --help':>19}")
    for name in names:
        med = statistics.median(samples[name])
        print(f"{name:<24}{med:>10.3f}{min(samples[name]):>9.3f}{max(samples[name]):>9.3f}{med / peer * 100:>17.1f} %")
    ratio = statistics.median(samples["mlgate --help"]) / peer * 100
    print(f"\nmlgate --help is {ratio:.1f} % of mlflow --help (goal: at most 5 %), {args.rounds} rounds")


if __name__ == "__main__":
    main()
