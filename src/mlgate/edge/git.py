"""GitOps repository adapter: clone, edit one file, commit, push (mode ``push``).

Thin edge over the ``git`` command line (real git; any remote git accepts, including a
local path or a bare repository). The edit itself is planned by the pure
:func:`mlgate.core.manifests.target_edit`; this module only moves bytes and commits.

Mode ``pull-request`` is defined by :class:`PromotionWriter`; its GitHub and GitLab
implementations live in :mod:`mlgate.edge.forges` (the bot's forge adapters).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from mlgate.core.errors import InfraError, ManifestError, MlgateError, UsageError
from mlgate.core.urls import redact_url
from mlgate.edge.files import read_text, resolve_in_repo, write_text

#: How many times a push that lost a race (non-fast-forward) is re-read, re-applied and retried.
PUSH_ATTEMPTS = 4


@dataclass(frozen=True)
class Change:
    """What a promotion writes: one file's new content on a branch, with a commit message.

    ``edit`` receives the file's current text and returns the new text (or the same text
    when the value is already set); it is re-applied when the branch moved under us.
    """

    repository: str
    branch: str
    path: str
    message: str
    edit: Callable[[str], str]


@dataclass(frozen=True)
class PromotionResult:
    """Where a promotion landed: ``commit`` (SHA) in push mode, ``url`` of the PR/MR in
    pull-request mode; ``changed`` is False when the file already held the value."""

    commit: str | None
    url: str | None
    changed: bool
    diff: str = ""


class PromotionWriter(Protocol):
    """Writes a :class:`Change` to a GitOps repository: by push, or as a pull/merge request."""

    def write(self, change: Change) -> PromotionResult: ...


def _git(args: list[str], cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.setdefault("GIT_TERMINAL_PROMPT", "0")
    env["LC_ALL"] = "C"
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, ["git", *args], proc.stdout, proc.stderr)
    return proc


def resolve_repository(repository: str, base_dir: Path) -> str:
    """A git URL as given, or a local path made absolute against ``base_dir``."""
    if "://" in repository or repository.startswith("git@") or repository.startswith("file:"):
        return repository
    return str((base_dir / repository).resolve())


def clone_error(repository: str, branch: str, stderr: str) -> MlgateError:
    """The error for a failed ``git clone``: a missing local repository or branch is a
    configuration error (exit 2); anything else (network, auth, server) is infrastructure (3)."""
    shown = redact_url(repository)
    text = redact_url(stderr.strip())
    last = text.splitlines()[-1] if text else "git clone failed"
    local = "://" not in repository and not repository.startswith("git@")
    if local and not Path(repository).exists():
        return UsageError(f"GitOps repository {shown} does not exist (gitops.repository in .mlgate.yml)")
    if "Remote branch" in text and "not found" in text:
        return UsageError(f"GitOps repository {shown} has no branch {branch!r} (gitops.branch in .mlgate.yml)")
    return InfraError(f"cannot clone branch {branch!r} of GitOps repository {shown}: {last}")


class PushWriter:
    """Mode ``push``: commit on the target branch and push it (any git remote).

    Each attempt clones afresh (shallow), applies ``change.edit``, commits and pushes; a
    rejected (non-fast-forward) push is retried up to :data:`PUSH_ATTEMPTS` times.
    """

    def __init__(self, author_name: str = "mlgate", author_email: str = "mlgate@users.noreply.local"):
        self.author_name = author_name
        self.author_email = author_email

    def write(self, change: Change) -> PromotionResult:
        """Raises InfraError (remote unreachable, push refused), ManifestError (edit failed)."""
        last_error = ""
        for _attempt in range(PUSH_ATTEMPTS):
            with tempfile.TemporaryDirectory(prefix="mlgate-gitops-") as tmp:
                work = Path(tmp) / "repo"
                clone = _git(["clone", "--quiet", "--depth", "1", "--branch", change.branch, "--", change.repository, str(work)], check=False)
                if clone.returncode != 0:
                    raise clone_error(change.repository, change.branch, clone.stderr)
                target = resolve_in_repo(work, change.path)
                if not target.is_file():
                    raise ManifestError(f"{change.path}: no such file in {redact_url(change.repository)} (branch {change.branch})")
                old = read_text(target, change.path)
                new = change.edit(old)
                if new == old:
                    head = _git(["rev-parse", "HEAD"], cwd=work).stdout.strip()
                    return PromotionResult(commit=head, url=None, changed=False)
                write_text(target, new, change.path)
                _git(["add", "--", change.path], cwd=work)
                _git(
                    ["-c", f"user.name={self.author_name}", "-c", f"user.email={self.author_email}",
                     "commit", "--quiet", "-m", change.message],
                    cwd=work,
                )
                sha = _git(["rev-parse", "HEAD"], cwd=work).stdout.strip()
                diff = _git(["show", "--format=", "--unified=1", sha], cwd=work).stdout
                push = _git(["push", "--quiet", "origin", f"HEAD:refs/heads/{change.branch}"], cwd=work, check=False)
                if push.returncode == 0:
                    return PromotionResult(commit=sha, url=None, changed=True, diff=diff)
                last_error = push.stderr.strip()
                if "non-fast-forward" not in last_error and "fetch first" not in last_error and "rejected" not in last_error:
                    raise InfraError(f"push to {redact_url(change.repository)} ({change.branch}) failed: "
                                     f"{redact_url(last_error.splitlines()[-1]) if last_error else 'unknown error'}")
        raise InfraError(
            f"push to {redact_url(change.repository)} ({change.branch}) lost the race {PUSH_ATTEMPTS} times: "
            "the branch keeps moving"
        )


def writer_for(mode: str) -> PromotionWriter:
    """The writer for a GitOps mode; ``pull-request`` needs a forge (the bot's adapters)."""
    if mode == "push":
        return PushWriter()
    if mode == "pull-request":
        try:
            from mlgate.edge.forges import promotion_writer_from_env  # type: ignore[attr-defined]
        except ImportError:
            raise UsageError(
                "GitOps mode 'pull-request' needs forge credentials and the bot's forge adapters; "
                "use 'mlgate bot' or mode 'push'"
            ) from None
        return promotion_writer_from_env()
    raise UsageError(f"unknown GitOps mode {mode!r} (push or pull-request)")
