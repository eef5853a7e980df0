"""A real Prometheus server scraping an exporter the tests control, plus canary test helpers.

Session fixtures: ``exporter`` (prometheus-client's HTTP server on a free loopback port, with
gauges per model and version that tests set) and ``prometheus`` (the Debian ``prometheus``
binary, ``scrape_interval: 1s``, a temp TSDB, on another free loopback port). Both stop at
the end of the session. Tests isolate themselves by using their own model name as a label.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "canary"


# The exporter and prometheus fixtures live in tests/conftest.py (one Prometheus per session).
from tests.conftest import Exporter, wait_for_value  # noqa: F401,E402


def clock() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def model_name() -> str:
    return f"canary-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def registry(mlflow_server: str):
    from mlgate.edge.registry import Registry

    return Registry(mlflow_server)


def register_versions(registry: Any, model: str, n: int = 2, *, champion: str | None = "1",
                      gates: dict[str, str] | None = None) -> None:
    """Versions 1..n of ``model`` with source ``s3://models/<model>/<v>``; v1 holds champion,
    the others passed their gates (``gates`` overrides per version)."""
    client = registry.client
    client.create_registered_model(model)
    for v in range(1, n + 1):
        client.create_model_version(model, source=f"s3://models/{model}/{v}", run_id=None)
        if v > 1:
            client.set_model_version_tag(model, str(v), "mlgate.gates", (gates or {}).get(str(v), "passed"))
    if champion:
        client.set_registered_model_alias(model, "champion", champion)


def seed_repo(tmp: Path, files: dict[str, str]) -> Path:
    """A bare GitOps repository (branch main) holding ``files``; returns its path."""
    bare = tmp / "gitops.git"
    git("init", "--quiet", "--bare", "-b", "main", str(bare))
    seed = tmp / "seed"
    for rel, text in files.items():
        p = seed / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    git("init", "--quiet", "-b", "main", cwd=seed)
    git("add", "-A", cwd=seed)
    git("commit", "--quiet", "-m", "seed", cwd=seed)
    git("push", "--quiet", str(bare), "main", cwd=seed)
    return bare


def history(bare: Path) -> list[tuple[str, str]]:
    """(sha, subject) of every commit on main, oldest first."""
    out = git("--git-dir", str(bare), "log", "--reverse", "--format=%H%x09%s", "main")
    return [tuple(line.split("\t", 1)) for line in out.splitlines()]  # type: ignore[misc]


def file_at(bare: Path, ref: str, path: str) -> str:
    return git("--git-dir", str(bare), "show", f"{ref}:{path}")


def swaps(a: str, b: str) -> list[tuple[str, str]]:
    """(old, new) for each line that differs between two texts of the same line count."""
    la, lb = a.splitlines(), b.splitlines()
    assert len(la) == len(lb), "lines were added or removed"
    return [(x, y) for x, y in zip(la, lb) if x != y]


def drive(tick_once: Callable[[], list[Any]], until: Callable[[], bool], timeout: float = 30.0,
          pause: float = 0.2) -> list[Any]:
    """Call ``tick_once`` until ``until()`` holds; returns every TickResult seen."""
    seen: list[Any] = []
    deadline = time.monotonic() + timeout
    while True:
        seen += tick_once()
        if until():
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s; last results: "
                                 f"{[(r.action, r.message) for r in seen[-3:]]}")
        time.sleep(pause)
