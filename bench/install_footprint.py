"""Install footprint: what `pip install mlgate` costs a CI job or the bot's image, against
today's set (full MLflow as a base dependency) and MLflow's own two packages, side by side.

Run: `make bench` (or `.venv/bin/python bench/install_footprint.py [--rounds N] [--keep DIR]`).

In one run, with one warm pip cache (the machine's), each set is installed into a fresh
virtual environment (`python -m venv`, then `pip install`), `--rounds` times in rotating order:

* ``mlgate``                   the base: mlflow-skinny (this repository's wheel, built once)
* ``mlgate[bot]``              the bot's image (bot/Dockerfile installs this set)
* ``mlgate[local,evaluate]``   full MLflow: embedded store, validate.evaluation (`make demo`)
* ``today: mlgate``            the previous base: the same wheel plus full ``mlflow`` and
  ``jsonschema`` (until issue 12 both were base dependencies: exactly that set)
* ``today: mlgate[bot]``       the previous bot image's set (that base and the bot extra of then)
* ``mlflow``, ``mlflow-skinny`` MLflow alone, the version installed here

Every set gets the MLflow release installed here (a constraints file pins ``mlflow`` and
``mlflow-skinny`` to it), so the sets differ in packaging only, not in MLflow version.

Per set: install seconds (wall clock of `pip install`, the fastest of the rounds, as other work
on the machine only ever adds to it; venv creation not included), the CPU seconds pip used
(median; steadier than wall time on a busy machine),
installed MB (`du` of the venv, which includes pip itself, about 15 MB in an empty venv) and
package count (`pip list`, pip itself not counted). Then ``mlgate validate`` wall time (median of
`--rounds`, fresh processes) from the base install and from the full one against one
`mlflow server` (SQLite backend, loopback): thresholds and the champion, from logged metrics.

Goal (issue 12): ``mlgate`` and ``mlgate[bot]`` at most 250 MB each and at most 0.35x the
install time of today's set (``today: mlgate``, what `pip install mlgate` installed before; the
previous bot set is shown for reference). Exit status 1 when missed.
"""

from __future__ import annotations

import argparse
import json
import contextlib
import logging
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GOAL_MB = 250.0
GOAL_RATIO = 0.35


#: What mlgate's base dependencies were before issue 12 (pyproject.toml at 4c55eda^) beyond today's
#: base: full MLflow instead of mlflow-skinny, and jsonschema (now a test dependency only).
TODAY_BASE_EXTRA = ["jsonschema>=4.22"]
#: The bot extra before issue 12 (4c55eda^), which the previous image installed.
TODAY_BOT = ["starlette>=0.40", "uvicorn[standard]>=0.30", "PyGithub>=2.4", "python-gitlab>=4.10",
             "prometheus-client>=0.20", "psycopg[binary]>=3.1", "orjson>=3.10"]


def sets(wheel: Path, mlflow_version: str) -> dict[str, list[str]]:
    """Set name -> `pip install` arguments. The "today" sets are the sets of pyproject.toml before
    issue 12 (4c55eda^), rebuilt from this wheel (whose base is a subset of that one) plus what
    the base and the bot extra had then: mlflow brings mlflow-skinny, so the result is the same."""
    w = str(wheel)
    mlflow = f"mlflow=={mlflow_version}"
    return {
        "mlgate": [w],
        "mlgate[bot]": [f"{w}[bot]"],
        "mlgate[local,evaluate]": [f"{w}[local,evaluate]"],
        "today: mlgate": [w, mlflow, *TODAY_BASE_EXTRA],
        "today: mlgate[bot]": [w, mlflow, *TODAY_BASE_EXTRA, *TODAY_BOT],
        "mlflow": [f"mlflow=={mlflow_version}"],
        "mlflow-skinny": [f"mlflow-skinny=={mlflow_version}"],
    }


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MLFLOW_TRACKING_URI")}
    e["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return e


def install(where: Path, args: list[str]) -> tuple[float, float]:
    """A fresh venv at ``where`` with ``pip install args``; returns (wall seconds, CPU seconds) of
    pip (CPU: user + system of pip and its children, less sensitive to a busy machine)."""
    shutil.rmtree(where, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([str(where / "bin" / "python"), "-m", "pip", "install", "-q", *args],
                          capture_output=True, text=True, env=env())
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"pip install {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def footprint(where: Path) -> tuple[float, int, bool]:
    """(installed MB as `du -sm` counts it, packages besides pip, whether full mlflow is installed)."""
    mb = float(subprocess.run(["du", "-sm", str(where)], capture_output=True, text=True, check=True).stdout.split()[0])
    out = subprocess.run([str(where / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                         capture_output=True, text=True, check=True, env=env()).stdout
    names = {p["name"].lower() for p in json.loads(out)}
    return mb, len(names - {"pip"}), "mlflow" in names


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_tracking_server(workdir: Path) -> tuple[subprocess.Popen, str]:
    """`mlflow server` from this repository's venv (SQLite, proxied artifacts) on loopback."""
    import httpx

    port = free_port()
    e = env()
    e["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    log = open(workdir / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
                             "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            cwd=workdir, env=e, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"mlflow server did not start: {(workdir / 'server.log').read_text()[-2000:]}")
        time.sleep(0.3)


def seed_registry(url: str, model: str) -> None:
    """Version 1 (acc 0.90, alias champion) and version 2 (acc 0.92) of ``model``, each from a run
    that logged ``acc``: what `mlgate train` leaves behind, without training anything."""
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    c = MlflowClient(tracking_uri=url, registry_uri=url)
    exp = c.create_experiment(model)
    c.create_registered_model(model)
    for acc in (0.90, 0.92):
        run = c.create_run(exp)
        c.log_metric(run.info.run_id, "acc", acc)
        c.set_terminated(run.info.run_id)
        mv = c.create_model_version(model, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        if acc == 0.90:
            c.set_registered_model_alias(model, "champion", mv.version)


def validate_seconds(venv: Path, project: Path, url: str, rounds: int) -> float:
    """Median wall time of `mlgate validate --version 2` (fresh processes) from ``venv``."""
    e = env()
    e["MLFLOW_TRACKING_URI"] = url
    samples = []
    for _ in range(rounds + 1):  # the first one warms the page cache and is not counted
        start = time.perf_counter()
        proc = subprocess.run([str(venv / "bin" / "mlgate"), "validate", "--version", "2"], cwd=project, env=e,
                              capture_output=True, text=True)
        samples.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"mlgate validate from {venv.name} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return statistics.median(samples[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="installs per set (the fastest counts), default 3")
    parser.add_argument("--keep", type=Path, default=None, help="keep the venvs in this directory")
    args = parser.parse_args()
    mlflow_version = metadata.version("mlflow")
    work = Path(args.keep or tempfile.mkdtemp(prefix="mlgate-footprint-"))
    work.mkdir(parents=True, exist_ok=True)
    server = None
    try:
        # one wheel of this repository, as PyPI would serve it (not rebuilt per set)
        wheels = work / "wheel"
        shutil.rmtree(wheels, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                       check=True, env=env(), capture_output=True)
        wheel = next(wheels.glob("mlgate-*.whl"))
        # one MLflow release in every set: mlgate's mlflow-skinny>=... would otherwise take the newest
        # skinny while the "today" sets hold this venv's mlflow (and its skinny); side by side means
        # the same MLflow, packaged two ways
        same_mlflow = work / "same-mlflow.txt"
        same_mlflow.write_text(f"mlflow=={mlflow_version}\nmlflow-skinny=={mlflow_version}\n")
        plan = {n: [*a, "-c", str(same_mlflow)] for n, a in sets(wheel, mlflow_version).items()}
        names = list(plan)
        seconds: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        slug = {n: n.replace("today: ", "today-").replace("[", "-").replace("]", "").replace(",", "-") for n in names}
        for i in range(args.rounds):
            order = names[i % len(names):] + names[: i % len(names)]
            for name in order:
                wall, used = install(work / slug[name], plan[name])
                seconds[name].append(wall)
                cpu[name].append(used)
                print(f"  installed {name:<24} in {wall:6.1f} s ({used:.1f} s CPU)", file=sys.stderr, flush=True)
        # the fastest round: other work on the machine only ever adds wall time
        rows = {n: (min(seconds[n]), *footprint(work / slug[n])) for n in names}
        cpu_s = {n: statistics.median(cpu[n]) for n in names}

        server, url = start_tracking_server(work)
        project = work / "project"
        project.mkdir(exist_ok=True)
        (project / ".mlgate.yml").write_text(textwrap.dedent("""\
            model: footprint
            validate:
              gates:
                - metric: acc
                  min: 0.5
                  max_regression: 0.05
            """))
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # MLflow's "View run" lines
            seed_registry(url, "footprint")
        vrounds = max(3, args.rounds)
        validate = {n: validate_seconds(work / slug[n], project, url, vrounds) for n in ("mlgate", "mlgate[local,evaluate]")}
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\nmlflow {mlflow_version}, Python {sys.version.split()[0]}, warm pip cache, "
          f"{args.rounds} install(s) per set\n")
    print("| set | install s | install CPU s | installed MB | packages | full mlflow | mlgate validate s |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for n in names:
        s, mb, count, full = rows[n]
        v = f"{validate[n]:.2f}" if n in validate else ""
        print(f"| {n} | {s:.1f} | {cpu_s[n]:.1f} | {mb:.0f} | {count} | {'yes' if full else 'no'} | {v} |")
    ok = True
    print()
    for small, today in (("mlgate", "today: mlgate"), ("mlgate[bot]", "today: mlgate")):
        s, mb = rows[small][0], rows[small][1]
        ratio = s / rows[today][0]
        met = mb <= GOAL_MB and ratio <= GOAL_RATIO
        ok &= met
        print(f"{small}: {mb:.0f} MB (goal <= {GOAL_MB:.0f}), {s:.1f} s = {ratio:.2f}x {today!r} "
              f"({rows[today][0]:.1f} s, {rows[today][1]:.0f} MB; goal <= {GOAL_RATIO}x): {'met' if met else 'MISSED'}"
              f"; CPU {cpu_s[small]:.1f} s = {cpu_s[small] / cpu_s[today]:.2f}x")
    prev = rows["today: mlgate[bot]"][0]
    print(f"(for reference) mlgate[bot] against the previous bot set 'today: mlgate[bot]' ({prev:.1f} s, "
          f"{rows['today: mlgate[bot]'][1]:.0f} MB): {rows['mlgate[bot]'][0] / prev:.2f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
