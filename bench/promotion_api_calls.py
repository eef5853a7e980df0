"""Forge API round trips per promotion PR (GitHub GraphQL, GitHub REST, GitLab), against the spec-checked fakes.

Run: `.venv/bin/python bench/promotion_api_calls.py` (part of `make bench`). Each promotion opens a
promotion pull/merge request that edits 1, 2, 3 or 10 files of a fresh GitOps repository whose
``mlgate-promotion`` label exists. Counts are the requests the forge adapters sent (retries
included; none happen here). Every GraphQL document is validated by the fake against
``@octokit/graphql-schema`` and every REST request against GitHub's OpenAPI description or
GitLab's documented API; the run fails if the fakes recorded any error.

- GitHub, ``github_api: graphql`` (default): one query, one mutation, one label call.
- GitHub, ``github_api: rest``: contents API (2 + 2·n) or git data API (4 + n), whichever is fewer,
  plus create PR and add labels.
- GitLab: one read per file (``GET .../repository/files/:path``), one commit with ``start_branch``
  for every file, one ``POST .../merge_requests`` carrying the label: 2 + n.

Goal (issue 12): GitHub 3 for every count; GitLab at most 2 + files.
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
COUNTS = (1, 2, 3, 10)


def edit(text: str) -> str:
    return text.replace("s3://m/wine/1", "s3://m/wine/2")


def request(repo: str, files: list[str]) -> PromotionRequest:
    return PromotionRequest(repo=repo, base="main", branch="mlgate/promote/wine/production/v2",
                            edits=tuple(FileEdit(f, edit) for f in files), message="promote wine v2",
                            title="Promote wine v2 to production", body="bench", mode="pull-request")


def measure() -> list[tuple[int, int, int, int]]:
    """(files, GitHub GraphQL calls, GitHub REST calls, GitLab calls) per file count."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gh = FakeGitHub(Path(tmp) / "gh", tokens={"t": "mlgate-bot"}).start()
        gl = FakeGitLab(Path(tmp) / "gl", tokens={"g": "mlgate-bot"}).start()
        try:
            gh.user("mlgate-bot")
            gl.user("mlgate-bot")
            for n in COUNTS:
                files = [f"env{i}/values.yaml" for i in range(n)]
                calls = []
                for api in ("graphql", "rest"):
                    repo = f"acme/deploy-{api}-{n}"
                    gh.add_repo(repo, {f: VALUES for f in files})
                    gh.add_label(repo, "mlgate-promotion")
                    forge = GitHubForge(gh.url, token="t", write_interval=0, request_interval=0, api=api)
                    calls.append(forge.open_promotion(request(repo, files)).api_calls)
                gl.add_project(f"grp/deploy{n}", {f: VALUES for f in files})
                r = GitLabForge(gl.url, token="g").open_promotion(request(f"grp/deploy{n}", files))
                rows.append((n, calls[0], calls[1], r.api_calls))
            assert not gh.errors and not gl.errors, (gh.errors, gl.errors)
        finally:
            gh.stop()
            gl.stop()
    return rows


def main() -> None:
    rows = measure()
    print("| files changed | GitHub (GraphQL) | GitHub (REST) | GitLab |")
    print("|---:|---:|---:|---:|")
    for n, g, r, lab in rows:
        print(f"| {n} | {g} | {r} | {lab} |")
    met = all(g == 3 for _, g, _, _ in rows) and all(lab <= 2 + n for n, _, _, lab in rows)
    print(f"\ngoal (GitHub 3 for every count, GitLab <= 2 + files): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
