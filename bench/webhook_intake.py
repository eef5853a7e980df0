"""Webhook intake benchmark: mlgate bot vs. a minimal Probot app, same burst, same machine.

Not a test: run ``.venv/bin/python bench/webhook_intake.py`` (``make bench`` may call it). Needs
``wrk`` and ``taskset`` (Debian ``wrk``, ``util-linux``), ``node`` and npm ``probot`` in
``node_modules``, ``openssl`` (a throw-away App key for Probot).

What it does, per round (``--rounds``, default 3), alternating which target goes first:

1. generates ``--deliveries`` (2,000) signed ``issue_comment`` deliveries of about ``--size``
   (9,000) bytes each, built from the smallest ``@octokit/webhooks-examples`` ``created``
   example (its repository ``*_url`` templates dropped until it fits) with a non-ASCII
   ``/promote`` comment body, each with a new ``X-GitHub-Delivery`` id;
2. replays them with ``wrk`` (``bench/wrk/replay.lua``, 1 thread, ``--connections`` 50 in
   flight), server and wrk pinned to different cores with ``taskset``;
3. for mlgate, checks that every delivery is a committed row in its SQLite database (WAL,
   synchronous=NORMAL) and that every answer was 202.

Both servers are warmed up first (Node's JIT needs a few thousand requests). mlgate runs with
``workers: 0`` (intake only: verify, store, answer) — the figure compared is the
acknowledgement; Probot answers after its no-op handler.

Prints p50/p99/max acknowledgement latency (wrk), deliveries/s (2,000 / time from the first
request to the last answer), server CPU time per delivery (/proc) and server RSS per round,
the median over rounds, and the ratios mlgate/Probot. Goal (issue 3): mlgate p99 ≤ ¼ of
Probot's and throughput ≥ Probot's, every delivery stored; exit status 0 when met, else 1.
The machine is shared: rounds vary by 10-40 %, CPU per delivery varies least.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-webhook-secret"
EXAMPLES = ROOT / "node_modules/@octokit/webhooks-examples/api.github.com/index.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _compact(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def issue_comment_template(size: int) -> dict:
    """The smallest ``issue_comment``/``created`` example; when it is larger than ``size``,
    the repository's ``*_url`` templates are dropped (last first) until it fits."""
    data = json.loads(EXAMPLES.read_text())
    examples = [ex for ev in data if ev["name"] == "issue_comment" for ex in ev["examples"] if ex.get("action") == "created"]
    if not examples:
        raise SystemExit("no issue_comment example in @octokit/webhooks-examples")
    base = copy.deepcopy(min(examples, key=lambda ex: len(_compact(ex))))
    repo = base["repository"]
    for key in reversed([k for k in repo if k.endswith("_url") and k not in ("html_url", "clone_url")]):
        if len(_compact(base)) <= size - 200:
            break
        del repo[key]
    return base


def make_deliveries(template: dict, n: int, size: int, tag: str) -> list[tuple[str, str, bytes]]:
    """``n`` (delivery id, signature, body) with bodies of about ``size`` bytes."""
    out = []
    base = copy.deepcopy(template)
    base["comment"]["body"] = ""
    pad = max(0, size - len(_compact(base)) - 40)
    filler = ("Modèle prêt à promouvoir — métriques ✓. " * (pad // 40 + 2)).encode()[:pad].decode("utf-8", "ignore")
    for i in range(n):
        body_obj = copy.deepcopy(base)
        body_obj["comment"]["id"] = 10_000_000 + i
        body_obj["comment"]["body"] = f"/promote wine@{i % 50 + 1} to staging\n\n{filler}"
        body = json.dumps(body_obj, separators=(",", ":"), ensure_ascii=False).encode()
        delivery = f"bench-{tag}-{i:05d}-{hashlib.sha1(body).hexdigest()[:8]}"
        sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        out.append((delivery, sig, body))
    return out


def write_requests(path: Path, deliveries: list[tuple[str, str, bytes]]) -> None:
    with path.open("wb") as f:
        for delivery, sig, body in deliveries:
            assert b"\n" not in body and b"\t" not in body
            f.write(delivery.encode() + b"\t" + sig.encode() + b"\t" + body + b"\n")


def wait_http(url: str, timeout: float, method: str = "GET") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
            urllib.request.urlopen(req, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process used so far, in seconds (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            vals[k] = int(v.split()[0])
    return vals.get("VmRSS", 0), vals.get("VmHWM", 0)


class Target:
    name: str
    url: str
    proc: subprocess.Popen

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def server_pid(self) -> int:
        """The server's pid (taskset execs the server, so it is the Popen pid)."""
        return self.proc.pid


class Mlgate(Target):
    def __init__(self, workdir: Path, cpu: str):
        self.name = "mlgate"
        self.db = workdir / "bot.db"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/webhooks/github"
        env = {
            **os.environ,
            "MLGATE_GITHUB_WEBHOOK_SECRET": SECRET,
            "MLGATE_DATABASE_URL": f"sqlite:///{self.db}",
            "MLGATE_WORKERS": "0",
            "MLGATE_LOG_LEVEL": "warning",
        }
        self.log = (workdir / "mlgate.log").open("wb")
        self.proc = subprocess.Popen(
            ["taskset", "-c", cpu, str(Path(sys.executable).parent / "mlgate"), "bot", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True,
        )
        wait_http(f"http://127.0.0.1:{port}/healthz", 30)

    def stored(self) -> int:
        with sqlite3.connect(self.db) as c:
            return c.execute("SELECT count(*) FROM mlgate_deliveries").fetchone()[0]


class Probot(Target):
    def __init__(self, workdir: Path, cpu: str):
        self.name = "probot"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/api/github/webhooks"
        key = workdir / "app-key.pem"
        if not key.exists():
            subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        env = {
            **os.environ,
            "APP_ID": "1",
            "PRIVATE_KEY_PATH": str(key),
            "WEBHOOK_SECRET": SECRET,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "LOG_LEVEL": "warn",
            "NODE_ENV": "production",
        }
        env.pop("PRIVATE_KEY", None)
        self.log = (workdir / "probot.log").open("wb")
        node = shutil.which("node") or "node"
        self.proc = subprocess.Popen(
            ["taskset", "-c", cpu, node, str(ROOT / "node_modules/probot/bin/probot.js"), "run",
             str(ROOT / "bench/probot_app/index.js")],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
        )
        wait_http(f"http://127.0.0.1:{port}/ping", 30)


def run_wrk(target: Target, requests_file: Path, connections: int, cpu: str) -> dict:
    """Replay the file once; returns wrk's JSON line plus ``seconds`` (first request → last answer)."""
    done = requests_file.with_suffix(".done")
    done.unlink(missing_ok=True)
    env = {**os.environ, "BENCH_REQUESTS": str(requests_file), "BENCH_DONE": str(done)}
    cmd = ["taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", "-d300s", "--timeout", "10s",
           "-s", str(ROOT / "bench/wrk/replay.lua"), target.url]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 280
    while time.monotonic() < deadline and proc.poll() is None:
        if done.exists() and done.read_text().endswith("\n"):
            break
        time.sleep(0.01)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # wrk sleeps for -d; SIGINT ends the sleep and prints
    out, err = proc.communicate(timeout=30)
    if not done.exists():
        raise RuntimeError(f"wrk did not finish the replay:\n{out}\n{err}")
    start_ns, end_ns = (int(x) for x in done.read_text().split())
    for line in out.splitlines():
        if line.startswith("{"):
            res = json.loads(line)
            res["seconds"] = (end_ns - start_ns) / 1e9
            return res
    raise RuntimeError(f"wrk printed no result:\n{out}\n{err}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deliveries", type=int, default=2000)
    ap.add_argument("--size", type=int, default=9000, help="body size in bytes (about)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=4000, help="deliveries sent to each target before measuring")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--wrk-cpu", default="1")
    ap.add_argument("--targets", default="mlgate,probot")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = ap.parse_args()

    for tool in ("wrk", "taskset", "node", "openssl"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed", file=sys.stderr)
            return 2
    template = issue_comment_template(args.size)
    work = Path(tempfile.mkdtemp(prefix="mlgate-bench-"))
    names = args.targets.split(",")
    targets: dict[str, Target] = {}
    results: dict[str, list[dict]] = {n: [] for n in names}
    try:
        for n in names:
            targets[n] = (Mlgate if n == "mlgate" else Probot)(work, args.server_cpu)
        sample = make_deliveries(template, 1, args.size, "probe")[0][2]
        print(f"bench: {args.deliveries} signed issue_comment deliveries of {len(sample)} bytes, "
              f"{args.connections} connections, server on CPU {args.server_cpu}, wrk on CPU {args.wrk_cpu}")
        # warm-up
        for n in names:
            f = work / f"warmup-{n}.tsv"
            write_requests(f, make_deliveries(template, args.warmup, args.size, f"warm-{n}"))
            run_wrk(targets[n], f, args.connections, args.wrk_cpu)
        for r in range(args.rounds):
            order = names if r % 2 == 0 else list(reversed(names))
            for n in order:
                t = targets[n]
                f = work / f"round{r}-{n}.tsv"
                write_requests(f, make_deliveries(template, args.deliveries, args.size, f"r{r}-{n}"))
                before = t.stored() if isinstance(t, Mlgate) else 0
                cpu0 = cpu_seconds(t.server_pid())
                res = run_wrk(t, f, args.connections, args.wrk_cpu)
                res["cpu_ms_per_delivery"] = (cpu_seconds(t.server_pid()) - cpu0) * 1000 / res["requests"]
                rss, hwm = rss_kb(t.server_pid())
                res["rss_kb"], res["hwm_kb"] = rss, hwm
                res["rate"] = args.deliveries / res["seconds"]
                if isinstance(t, Mlgate):
                    time.sleep(0.5)  # answers still in flight when wrk stopped
                    res["stored"] = t.stored() - before
                results[n].append(res)
                ok = sum(v for k, v in res["statuses"].items() if k.startswith("2"))
                extra = f", stored {res['stored']}/{args.deliveries}" if "stored" in res else ""
                print(f"round {r + 1} {n:7s} p50 {res['p50_us'] / 1000:7.1f} ms  p99 {res['p99_us'] / 1000:7.1f} ms  "
                      f"max {res['max_us'] / 1000:7.1f} ms  {res['rate']:7.0f}/s  CPU {res['cpu_ms_per_delivery']:.3f} ms/delivery  RSS {rss / 1024:5.0f} MB  "
                      f"2xx {ok}/{res['requests']}{extra}  errors {res['errors']}")
    finally:
        for t in targets.values():
            t.stop()
    summary = {}
    for n, rs in results.items():
        if not rs:
            continue
        summary[n] = {
            "p50_ms": statistics.median(r["p50_us"] for r in rs) / 1000,
            "p99_ms": statistics.median(r["p99_us"] for r in rs) / 1000,
            "max_ms": statistics.median(r["max_us"] for r in rs) / 1000,
            "rate": statistics.median(r["rate"] for r in rs),
            "rss_mb": max(r["rss_kb"] for r in rs) / 1024,
            "cpu_ms": statistics.median(r["cpu_ms_per_delivery"] for r in rs),
        }
    print("\nmedian over rounds:")
    for n, s in summary.items():
        print(f"  {n:7s} p50 {s['p50_ms']:7.1f} ms  p99 {s['p99_ms']:7.1f} ms  max {s['max_ms']:7.1f} ms  "
              f"{s['rate']:7.0f} deliveries/s  CPU {s['cpu_ms']:.3f} ms/delivery  RSS {s['rss_mb']:5.0f} MB")
    code = 0
    if "mlgate" in summary and "probot" in summary:
        m, p = summary["mlgate"], summary["probot"]
        p99_ratio = m["p99_ms"] / p["p99_ms"]
        rate_ratio = m["rate"] / p["rate"]
        print(f"ratios mlgate/probot: p50 {m['p50_ms'] / p['p50_ms']:.2f}  p99 {p99_ratio:.2f} (goal ≤ 0.25)  "
              f"max {m['max_ms'] / p['max_ms']:.2f}  throughput {rate_ratio:.2f} (goal ≥ 1.00)  RSS {m['rss_mb'] / p['rss_mb']:.2f}")
        stored_ok = all(r.get("stored") == args.deliveries for r in results["mlgate"])
        all_202 = all(set(r["statuses"]) == {"202"} for r in results["mlgate"])
        print(f"mlgate: every delivery stored: {stored_ok}; every answer 202: {all_202}")
        met = p99_ratio <= 0.25 and rate_ratio >= 1.0 and stored_ok and all_202
        print("goal met" if met else "goal NOT met")
        code = 0 if met else 1
    if args.json:
        print(json.dumps({"rounds": results, "summary": summary}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
