"""GitOps repository adapter: clone, edit one file, commit, push (mode ``push``).

Thin edge over the ``git`` command line (real git; any remote git accepts, including a
local path or a bare repository). The edit itself is planned by the pure
:func:`mlgate.core.manifests.target_edit`; this module only moves bytes and commits.

Mode ``pull-request`` is written by :class:`mlgate.edge.forges.ForgeWriter` through the
forges' APIs; :func:`mlgate.flows.promote.writer_for` chooses between the two.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mlgate.core.errors import InfraError, ManifestError, MlgateError, UsageError
from mlgate.core.gitmsg import git_said, with_git_output
from mlgate.core.promotion import Change, WriteResult
from mlgate.core.urls import redact_url
from mlgate.edge.files import read_text, resolve_in_repo, write_text

#: How many times a push that lost a race (non-fast-forward) is re-read, re-applied and retried.
PUSH_ATTEMPTS = 4


class PromotionWriter(Protocol):
    """Writes a :class:`~mlgate.core.promotion.Change` to a GitOps repository: by push
    (:class:`PushWriter`), or as a pull/merge request (:class:`mlgate.edge.forges.ForgeWriter`)."""

    def write(self, change: Change) -> WriteResult: ...


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


def clone_error(repository: str, branch: str, stderr: str, config_file: str = ".mlgate.yml") -> MlgateError:
    """The error for a failed ``git clone``: a missing local repository or branch is a
    configuration error (exit 2); anything else (network, auth, server) is infrastructure (3).

    The message keeps all of git's stderr (:func:`mlgate.core.gitmsg.git_said`: secrets masked,
    progress dropped), so the cause ("ssh: Could not resolve hostname ...") is not lost behind
    git's last line; ``config_file`` is the config the user gave, named in the hints.
    """
    shown = redact_url(repository)
    text = git_said(stderr)
    local = "://" not in repository and not repository.startswith("git@")
    if local and not Path(repository).exists():
        return UsageError(f"GitOps repository {shown} does not exist (gitops.repository in {config_file})")
    if "Remote branch" in text and "not found" in text:
        return UsageError(f"GitOps repository {shown} has no branch {branch!r} (gitops.branch in {config_file})")
    return InfraError(with_git_output(f"cannot clone branch {branch!r} of GitOps repository {shown}", stderr,
                                      "git clone failed"))


class PushWriter:
    """Mode ``push``: commit on the target branch and push it (any git remote).

    Each attempt clones afresh (shallow), applies ``change.edit``, commits and pushes; a
    rejected (non-fast-forward) push is retried up to :data:`PUSH_ATTEMPTS` times.
    """

    def __init__(self, author_name: str = "mlgate", author_email: str = "mlgate@users.noreply.local",
                 config_file: str = ".mlgate.yml"):
        self.author_name = author_name
        self.author_email = author_email
        #: the config the GitOps settings came from, named in configuration errors
        self.config_file = config_file

    def write(self, change: Change) -> WriteResult:
        """Raises InfraError (remote unreachable, push refused), ManifestError (edit failed)."""
        last_error = ""
        for _attempt in range(PUSH_ATTEMPTS):
            with tempfile.TemporaryDirectory(prefix="mlgate-gitops-") as tmp:
                work = Path(tmp) / "repo"
                clone = _git(["clone", "--quiet", "--depth", "1", "--branch", change.branch, "--", change.repository, str(work)], check=False)
                if clone.returncode != 0:
                    raise clone_error(change.repository, change.branch, clone.stderr, self.config_file)
                target = resolve_in_repo(work, change.path)
                if not target.is_file():
                    raise ManifestError(f"{change.path}: no such file in {redact_url(change.repository)} (branch {change.branch})")
                old = read_text(target, change.path)
                new = change.edit(old)
                if new == old:
                    head = _git(["rev-parse", "HEAD"], cwd=work).stdout.strip()
                    return WriteResult(commit=head, url=None, changed=False)
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
                    return WriteResult(commit=sha, url=None, changed=True, diff=diff)
                last_error = push.stderr.strip()
                # lost a race: " ! [rejected] ... (fetch first | non-fast-forward)"; a server's refusal
                # (" ! [remote rejected] ... (pre-receive hook declined)") is no race: retrying cannot help
                if "non-fast-forward" not in last_error and "fetch first" not in last_error and "[rejected]" not in last_error:
                    raise InfraError(with_git_output(f"push to {redact_url(change.repository)} ({change.branch}) failed",
                                                     push.stderr, "unknown error"))
        raise InfraError(
            f"push to {redact_url(change.repository)} ({change.branch}) lost the race {PUSH_ATTEMPTS} times: "
            "the branch keeps moving"
        )


# --------------------------------------------------------------------------- reading history (mlgate reconcile)


def _read(args: list[str], repo: Path) -> str:
    proc = _git(args, cwd=repo, check=False)
    if proc.returncode != 0:
        err = git_said(proc.stderr) or f"git {args[0]} failed"
        raise InfraError(f"git {' '.join(args[:2])} in {repo}: {err}")
    return proc.stdout


def open_repository(path: Path) -> Path:
    """The top of the git repository (work tree or bare) at ``path``.

    Raises:
        UsageError: ``path`` is not inside a git repository.
    """
    proc = _git(["rev-parse", "--absolute-git-dir"], cwd=path, check=False) if path.is_dir() else None
    if proc is None or proc.returncode != 0:
        raise UsageError(f"{path} is not a git repository: run mlgate reconcile in a clone of the GitOps repository "
                         "(or give --repo)")
    bare = _git(["rev-parse", "--is-bare-repository"], cwd=path).stdout.strip() == "true"
    return Path(proc.stdout.strip()) if bare else Path(_git(["rev-parse", "--show-toplevel"], cwd=path).stdout.strip())


def is_shallow(repo: Path) -> bool:
    """Whether the clone has only part of its history (CI checkouts often do)."""
    return _read(["rev-parse", "--is-shallow-repository"], repo).strip() == "true"


def resolve_commit(repo: Path, ref: str) -> str:
    """The full SHA of ``ref``. Raises UsageError for an unknown ref."""
    proc = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=repo, check=False)
    if proc.returncode != 0:
        raise UsageError(f"{ref!r} is not a commit in {repo}")
    return proc.stdout.strip()


def log_messages(repo: Path, ref: str) -> list[tuple[str, str, str]]:
    """(sha, committer date ISO 8601 UTC, full message) of every commit reachable from ``ref``,
    newest first in topological order (both parents of merges: a merged promotion commit is
    reached through the merge)."""
    out = _read(["log", "--topo-order", "--no-color", "--format=%H%x00%ct%x00%B%x1e", ref], repo)
    rows = []
    for record in out.split("\x1e"):
        record = record.strip("\n")
        if not record:
            continue
        sha, stamp, message = record.split("\x00", 2)
        rows.append((sha, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(stamp))), message))
    return rows


def changed_paths(repo: Path, sha: str) -> list[str]:
    """The files a (non-merge) commit changed."""
    return [p for p in _read(["diff-tree", "--no-commit-id", "--name-only", "-r", "--root", sha], repo).splitlines() if p]


def line_owners(repo: Path, ref: str, path: str) -> set[str]:
    """The commits that wrote the lines of ``path`` as it is at ``ref`` (``git blame``); empty
    when the file does not exist there."""
    proc = _git(["blame", "--porcelain", ref, "--", path], cwd=repo, check=False)
    if proc.returncode != 0:
        return set()
    return {line.split(" ", 1)[0] for line in proc.stdout.splitlines()
            if len(line) > 40 and line[40] == " " and all(c in "0123456789abcdef" for c in line[:40])}


# --------------------------------------------------------------------------- read-only probes (mlgate doctor)

#: Seconds a doctor probe (ls-remote, shallow clone) may take before it counts as "cannot tell".
PROBE_TIMEOUT = 60.0


@dataclass(frozen=True)
class BranchProbe:
    """What ``git ls-remote`` said about a repository and one branch.

    ``reachable``: the repository answered with the credentials git has (ssh keys, credential
    helper, userinfo in the URL: the ones :class:`PushWriter` uses). ``exists``: the branch is
    there. ``stderr``: git's stderr when the repository did not answer (may hold secrets: pass it
    through :func:`mlgate.core.gitmsg.git_said` before showing it)."""

    reachable: bool
    exists: bool
    stderr: str = ""


def _probe_git(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.setdefault("GIT_TERMINAL_PROMPT", "0")
    env["LC_ALL"] = "C"
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(["git", *args], 124, "", f"git {args[0]} timed out after {PROBE_TIMEOUT:g} s")


def probe_branch(repository: str, branch: str) -> BranchProbe:
    """``git ls-remote --heads --exit-code REPOSITORY refs/heads/BRANCH``: nothing is written.

    Returns a :class:`BranchProbe`; never raises for a remote that does not answer."""
    proc = _probe_git(["ls-remote", "--heads", "--exit-code", "--", repository, f"refs/heads/{branch}"])
    if proc.returncode == 0:
        return BranchProbe(True, True)
    if proc.returncode == 2:  # --exit-code: the repository answered, no ref matched
        return BranchProbe(True, False)
    return BranchProbe(False, False, proc.stderr)


def read_remote_file(repository: str, branch: str, path: str) -> str | None:
    """The text of ``path`` on ``branch``, read through a shallow clone without a checkout
    (``git clone --depth 1 --no-checkout``, then ``git checkout HEAD -- PATH``) into a temporary
    directory that is deleted afterwards; None when the branch has no such file. Read exactly as
    :class:`PushWriter` reads it (:func:`mlgate.edge.files.read_text`).

    Raises:
        InfraError: the clone failed (git's stderr, secrets masked); ManifestError: the path
            leaves the repository or the file is not UTF-8 text.
    """
    with tempfile.TemporaryDirectory(prefix="mlgate-doctor-") as tmp:
        work = Path(tmp) / "repo"
        clone = _probe_git(["clone", "--quiet", "--depth", "1", "--no-checkout", "--branch", branch, "--",
                            repository, str(work)])
        if clone.returncode != 0:
            raise InfraError(with_git_output(f"cannot clone branch {branch!r} of GitOps repository "
                                             f"{redact_url(repository)}", clone.stderr, "git clone failed"))
        target = resolve_in_repo(work, path)
        if _probe_git(["checkout", "--quiet", "HEAD", "--", path], cwd=work).returncode != 0 or not target.is_file():
            return None
        return read_text(target, path)
