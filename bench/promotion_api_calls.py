"""Forge API calls per promotion (GitHub and GitLab), measured against the spec-checked fakes.

Run: `.venv/bin/python bench/promotion_api_calls.py` (part of `make bench`). Each promotion opens a
promotion pull/merge request that edits 1, 2 or 3 files; mlgate picks the contents API or the git
data API, whichever needs fewer calls (issue 3). Counts are what the forge adapters sent.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlgate.edge.forges.base import FileEdit, PromotionRequest  # noqa: E402
from mlgate.edge.forges.github import GitHubForge  # noqa: E402
from mlgate.edge.forges.gitlab import GitLabForge  # noqa: E402
from tests.fakes.github_server import FakeGitHub  # noqa: E402
from tests.fakes.gitlab_server import FakeGitLab  # noqa: E402

VALUES = "models:\n  wine:\n    uri: s3://m/wine/1\n"


def edit(text: str) -> str:
    return text.replace("s3://m/wine/1", "s3://m/wine/2")


def request(repo: str, files: list[str]) -> PromotionRequest:
    return PromotionRequest(repo=repo, base="main", branch="mlgate/promote/wine/production/v2",
                            edits=tuple(FileEdit(f, edit) for f in files), message="promote wine v2",
                            title="Promote wine v2 to production", body="bench", mode="pull-request")


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gh = FakeGitHub(Path(tmp) / "gh", tokens={"t": "mlgate-bot"}).start()
        gl = FakeGitLab(Path(tmp) / "gl", tokens={"g": "mlgate-bot"}).start()
        try:
            gh.user("mlgate-bot")
            gl.user("mlgate-bot")
            for n in (1, 2, 3):
                files = [f"env{i}/values.yaml" for i in range(n)]
                gh.add_repo(f"acme/deploy{n}", {f: VALUES for f in files})
                gl.add_project(f"grp/deploy{n}", {f: VALUES for f in files})
                r1 = GitHubForge(gh.url, token="t", write_interval=0, request_interval=0).open_promotion(
                    request(f"acme/deploy{n}", files))
                r2 = GitLabForge(gl.url, token="g").open_promotion(request(f"grp/deploy{n}", files))
                rows.append((n, r1.api_calls, r2.api_calls))
            assert not gh.errors and not gl.errors, (gh.errors, gl.errors)
        finally:
            gh.stop()
            gl.stop()
    print(f"{'files changed':<15}{'GitHub calls':>14}{'GitLab calls':>14}")
    for n, a, b in rows:
        print(f"{n:<15}{a:>14}{b:>14}")


if __name__ == "__main__":
    main()
