"""The small interface mlgate needs from a forge (GitHub, GitLab), and its plain data.

Edge: implementations do network I/O (:mod:`mlgate.edge.forges.github` through PyGithub,
:mod:`mlgate.edge.forges.gitlab` through python-gitlab). Everything here is plain data and the
retry policy shared by both.

Retries (GitHub REST docs "Rate limits for the REST API" → secondary rate limits;
GitLab "Rate limits"): a call is retried on 5xx, 429 and GitHub's secondary rate limit
(403 whose message says so), waiting ``Retry-After`` seconds when the answer carries it
(else exponential backoff with jitter, via stamina). A wait longer than
:data:`MAX_INLINE_WAIT` seconds is not slept in a worker: :class:`ForgeBusy` is raised
with ``retry_after`` so the delivery is retried later by the queue.
"""

from __future__ import annotations


import re
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, TypeVar

from mlgate.core.errors import InfraError, MlgateError
from mlgate.core.freshness import Comparison
from mlgate.core.policy import Review
from mlgate.core.promotion import LABEL

#: Hidden marker that identifies mlgate's one comment per PR/MR (updated in place).
MARKER = "<!-- mlgate -->"
#: Commit status / check name kept on the PR head.
STATUS_CONTEXT = "mlgate/gates"
#: Seconds a worker may sleep inline for a Retry-After; longer waits go back to the queue.
MAX_INLINE_WAIT = 10.0
#: Attempts per forge call (first try included).
ATTEMPTS = 4
#: Placeholder in a promotion PR body, replaced by :func:`describe_change` of the actual diff.
CHANGE_PLACEHOLDER = "{{mlgate:change}}"


class ForgeError(MlgateError):
    """The forge refused a request for a reason retrying will not fix (exit 3).

    ``status`` is the HTTP status code (0 when there was no answer).
    """

    exit_code = 3

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


T = TypeVar("T")


class CommittersUnresolved(MlgateError):
    """The forge could not tell who authored/pushed all of a PR's commits (GitLab: a commit
    e-mail that matches no user). ``found``: the usernames that were resolved."""

    def __init__(self, message: str, found: set[str] | None = None):
        super().__init__(message)
        self.found = set(found or ())


class ForgeBusy(InfraError):
    """The forge is rate limiting or failing; try the whole delivery again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ForgeUnreachable(ForgeBusy):
    """The forge's address refused the connection or did not resolve (not a timeout): still
    retried later like :class:`ForgeBusy`, and a failed check for ``mlgate doctor``."""


@dataclass(frozen=True)
class RepoAccess:
    """What the forge says about a repository and the caller's right to open a promotion PR/MR
    there (read calls only; ``mlgate doctor``).

    ``exists``: the repository is visible to the credentials (False: 404, which forges also answer
    for a private repository the caller may not see). ``can_open_pr``: True/False, None when the
    forge did not say. ``role``: what the decision rests on, e.g. ``push: false`` or
    ``Reporter (20)``."""

    exists: bool
    default_branch: str = ""
    can_open_pr: bool | None = None
    role: str = ""


@dataclass(frozen=True)
class PullRequest:
    """A PR (GitHub) or merge request (GitLab). ``number`` is GitLab's ``iid``.

    ``state``: "open", "closed" or "merged". ``author_id`` is the numeric user id.
    ``head_repo_url``: the HTTPS clone URL of the repository that holds the head commit (a
    fork's, for a PR from a fork): GitHub ``head.repo.clone_url``, GitLab the source
    project's ``http_url_to_repo``; None when the forge does not say (a deleted fork).
    """

    number: int
    author: str
    head_sha: str
    head_ref: str
    base_ref: str
    state: str
    url: str
    title: str = ""
    body: str = ""
    author_id: int | None = None
    head_repo_url: str | None = None


@dataclass(frozen=True)
class FileEdit:
    """One file of a commit: ``apply`` maps the file's current text to the new text.

    ``apply`` is called again on the re-read text when the branch moved under us, so it
    must be a pure function of its input (e.g. :func:`mlgate.core.manifests.target_edit`).
    """

    path: str
    apply: Callable[[str], str]


@dataclass(frozen=True)
class PromotionRequest:
    """What to open in the GitOps repository.

    ``repo``: GitHub ``owner/name`` or GitLab project path. ``base``: the branch the
    deployment tool watches. ``branch``: the promotion branch
    (``mlgate/promote/<model>/<env>/v<version>``). ``mode``: "pull-request" opens a PR/MR;
    "push" commits straight to ``base``.
    """

    repo: str
    base: str
    branch: str
    edits: tuple[FileEdit, ...]
    message: str
    title: str
    body: str
    labels: tuple[str, ...] = (LABEL,)
    mode: str = "pull-request"


@dataclass(frozen=True)
class PromotionResult:
    """Outcome of :meth:`Forge.open_promotion`.

    ``url``/``number``: the PR/MR (None in push mode). ``created``: a new PR/MR was opened
    (False: an open one was reused). ``changed``: a new commit was made (False: the files
    already held the new values). ``commit``: the commit holding the edit. ``api_calls``:
    forge requests this promotion made. ``diff``: per path, (old text, new text).
    """

    url: str | None
    number: int | None
    created: bool
    changed: bool
    commit: str | None
    api_calls: int
    branch: str
    diff: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class GitLabApprovals:
    """GitLab merge request approvals API (``GET .../merge_requests/:iid/approvals``)."""

    approved_by: tuple[str, ...]
    approvals_left: int | None
    approvals_required: int | None
    #: approvers whose user object says ``bot: true`` (service accounts, token bots)
    bots: tuple[str, ...] = ()


class Forge(Protocol):
    """What the bot needs from GitHub or GitLab. ``repo`` is ``owner/name`` or a GitLab path."""

    name: str
    api_calls: int

    def default_branch(self, repo: str) -> str: ...

    def read_file(self, repo: str, path: str, ref: str) -> str | None:
        """The file's text at ``ref`` (branch or sha); None when it does not exist."""

    def pull_request(self, repo: str, number: int) -> PullRequest: ...

    def reviews(self, repo: str, number: int) -> list[Review]:
        """All reviews, every page (GitHub); [] on GitLab."""

    def approvals(self, repo: str, number: int) -> GitLabApprovals | None:
        """GitLab approvals; None on GitHub."""

    def committers(self, repo: str, number: int) -> set[str]:
        """Logins of the authors of the PR's commits (GitHub); GitLab: usernames when resolvable."""

    def compare(self, repo: str, base: str, head: str) -> Comparison:
        """``base...head``: the files changed from the merge base of ``base`` and ``head`` to ``head``
        (each with its diff), and whether ``head`` descends from ``base``.

        ``base``/``head``: commit SHAs or branch names. GitHub REST "Compare two commits"
        (``GET /repos/{o}/{r}/compare/{base}...{head}``); GitLab "Compare branches, tags or commits"
        (``GET /projects/:id/repository/compare``, and the reverse for the ancestry). Raises
        :class:`ForgeError` when the forge does not know a commit (404).
        """

    def permission(self, repo: str, user: str, user_id: int | None = None) -> str:
        """The user's level on the repository, one of :data:`mlgate.core.policy.PERMISSIONS`."""

    def in_team(self, team: str, user: str, user_id: int | None = None) -> bool:
        """Whether the user is an active member of ``org/slug`` (GitLab: group path)."""

    def upsert_comment(self, repo: str, number: int, body: str, known_id: int | None = None) -> tuple[int, str]:
        """Create or update mlgate's one comment (found by :data:`MARKER`); (comment id, url)."""

    def set_status(self, repo: str, sha: str, state: str, description: str, target_url: str | None = None,
                   context: str = STATUS_CONTEXT) -> None:
        """A commit status named ``context`` (default :data:`STATUS_CONTEXT`); ``state`` "pending",
        "success" or "failure". GitHub REST "Create a commit status" (``context``); GitLab
        "Set the pipeline status of a commit" (``name``)."""

    def close_pull_request(self, repo: str, number: int, comment: str) -> bool:
        """Comment ``comment`` on PR/MR ``number``, then close it without merging.

        GitHub: ``POST /issues/{n}/comments`` then ``PATCH /pulls/{n}`` ``state=closed``;
        GitLab: ``POST .../merge_requests/:iid/notes`` then ``PUT .../merge_requests/:iid``
        ``state_event=close``. Returns False (and writes nothing) when it is not open
        (already closed or merged).
        """

    def open_promotion(self, req: PromotionRequest) -> PromotionResult: ...

    def web_url(self, repo: str) -> str: ...


_PR_URL = re.compile(r"/(?:pull|pulls|merge_requests)/(?P<n>[0-9]+)/?$")


def pr_number_from_url(url: str | None) -> int | None:
    """The number of a PR/MR from its web address (GitHub ``.../pull/12``, GitLab
    ``.../-/merge_requests/12``), else None."""
    m = _PR_URL.search(url or "")
    return int(m["n"]) if m else None


def repo_path(repository: str) -> str:
    """``owner/name`` (GitLab: ``group/sub/name``) from a GitOps ``repository`` setting.

    Accepts ``owner/name``, ``https://host/owner/name(.git)``, ``git@host:owner/name.git``.
    Raises ForgeError for a local path (the bot cannot open PRs on a local repository) and for
    a segment that is no forge name (``..``, ``-x``, spaces): it goes into API paths as it is.
    """
    r = repository.strip()
    m = re.match(r"^[\w.-]+@[\w.-]+:(?P<p>.+?)(\.git)?/?$", r)
    if m:
        return _checked_repo(repository, m["p"])
    m = re.match(r"^[a-z][a-z0-9+.-]*://[^/]+/(?P<p>.+?)(\.git)?/?$", r)
    if m:
        return _checked_repo(repository, m["p"])
    if re.match(r"^[\w.-]+(/[\w.-]+)+$", r) and not r.startswith((".", "/")):
        return _checked_repo(repository, r.removesuffix(".git"))
    raise ForgeError(f"gitops.repository {repository!r} is not a forge repository (owner/name or URL)")


def _checked_repo(repository: str, path: str) -> str:
    """``path`` when every segment is a forge name (``[A-Za-z0-9_.-]``, not ``.``/``..``, not
    starting with ``-``); else ForgeError: the path goes into API URLs as it is."""
    for seg in path.split("/"):
        if not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*", seg) or seg in (".", ".."):
            raise ForgeError(f"gitops.repository {repository!r}: segment {seg!r} is not a repository or namespace name")
    return path


def safe_path(path: str) -> str:
    """``path`` (an API path such as ``/repos/acme/app/contents/x``) when no segment is a dot
    segment (RFC 3986 section 3.3: ``.``/``..``, also percent-encoded, also inside an encoded
    segment such as GitLab's ``acme%2F..%2Fx``) and it holds no control character.

    Clients and proxies resolve dot segments (RFC 3986 section 5.2.4), so ``/repos/a/../../orgs/a``
    would reach another endpoint: every forge request goes through this check first.

    Raises:
        ForgeError: status 400, naming the path; nothing is sent.
    """
    from urllib.parse import unquote

    for seg in path.split("/"):
        parts = unquote(seg).replace("\\", "/").split("/")
        if any(p in (".", "..") for p in parts) or any(ord(c) < 32 or ord(c) == 127 for c in unquote(seg)):
            raise ForgeError(f"refusing to send a request to {path!r}: a path segment is '.' or '..' or holds a "
                             "control character (a repository or file name from input)", 400)
    return path


def retry_after_seconds(headers: dict[str, str] | None) -> float | None:
    """``Retry-After`` (seconds) or the wait until ``X-RateLimit-Reset`` when remaining is 0."""
    if not headers:
        return None
    low = {k.lower(): v for k, v in headers.items()}
    ra = low.get("retry-after")
    if ra is not None:
        try:
            return max(0.0, float(ra))
        except ValueError:
            return None
    return None


def call_with_retries(fn: Callable[[], object], classify: Callable[[BaseException], float | bool | None], what: str):
    """Run ``fn`` with stamina retries.

    ``classify(exc)`` returns False/None (do not retry), True (retry with backoff) or a
    float (retry after that many seconds). A float above :data:`MAX_INLINE_WAIT` raises
    :class:`ForgeBusy` at once, for the queue to retry later.
    """
    import stamina

    def hook(exc: Exception) -> bool | float:
        verdict = classify(exc)
        if verdict is None or verdict is False:
            return False
        if verdict is True:
            return True
        wait = float(verdict)
        if wait > MAX_INLINE_WAIT:
            raise ForgeBusy(f"{what}: rate limited, retry after {wait:.0f} s", retry_after=wait) from exc
        return wait

    @stamina.retry(on=hook, attempts=ATTEMPTS, timeout=60.0, wait_initial=0.2, wait_max=5.0)
    def run():
        return fn()

    return run()


def describe_change(diff: dict[str, tuple[str, str]]) -> str:
    """Markdown: per changed file, the first changed line, old → new."""
    parts = []
    for path, (old, new) in diff.items():
        o, n = old.splitlines(), new.splitlines()
        for i in range(max(len(o), len(n))):
            a = o[i] if i < len(o) else ""
            b = n[i] if i < len(n) else ""
            if a != b:
                parts.append(f"`{path}` line {i + 1}: `{a.strip()}` → `{b.strip()}`")
                break
    return "; ".join(parts) or "no change"


def fill_body(body: str, diff: dict[str, tuple[str, str]]) -> str:
    """``body`` with :data:`CHANGE_PLACEHOLDER` replaced by the change description."""
    return body.replace(CHANGE_PLACEHOLDER, describe_change(diff))


def forge_call(
    forge: str,
    where: str,
    what: str,
    send: Callable[[], T],
    *,
    http_error: type[BaseException],
    status_of: Callable[[Any], object],
    classify: Callable[[BaseException], float | bool | None],
    retry_after_of: Callable[[Any], float | None] = lambda e: None,
    on_attempt: Callable[[], None] = lambda: None,
) -> T:
    """One forge REST request with stamina retries, metrics, and errors a user can act on.

    Args:
        forge: "github" or "gitlab" (metric label); where: the forge's base URL (for messages);
        what: "GitHub GET /repos/..." (for messages); send: performs the request once;
        http_error: the client library's HTTP error class; status_of: its status code;
        classify: see :func:`call_with_retries`; retry_after_of: seconds from its headers;
        on_attempt: called before each attempt (API call counting).

    Raises:
        ForgeBusy: retryable failures that outlived the retries, and an unreachable forge.
        The library's HTTP error for everything else (4xx), unchanged.
    """
    title = "GitHub" if forge == "github" else "GitLab"

    def once() -> T:
        on_attempt()
        try:
            out = send()
        except http_error as e:
            record_call(forge, str(status_of(e)))
            raise
        except Exception:
            record_call(forge, "network")
            raise
        record_call(forge)
        return out

    try:
        return call_with_retries(once, classify, what)  # type: ignore[return-value]
    except http_error as e:
        if classify(e):
            raise ForgeBusy(f"{what} failed after retries: {status_of(e)}", retry_after=retry_after_of(e)) from None
        raise
    except (ConnectionError, OSError) as e:
        raise _unreachable(title, where, e) from None
    except Exception as e:
        if type(e).__module__.split(".")[0] in ("requests", "urllib3"):
            raise _unreachable(title, where, e) from None
        raise


def _unreachable(title: str, where: str, e: BaseException) -> ForgeBusy:
    """ForgeBusy for a timeout (proves nothing), :class:`ForgeUnreachable` for a refused or
    unresolved address."""
    cls = ForgeBusy if "timeout" in type(e).__name__.lower() else ForgeUnreachable
    return cls(f"{title} at {where} is unreachable: {type(e).__name__}")


def record_call(forge: str, error_status: str | None = None) -> None:
    """Count one forge API request (and its failure) in the bot's Prometheus metrics, when loaded."""
    try:
        from mlgate.edge import metrics
    except Exception:  # prometheus-client missing: the CLI works without metrics
        return
    metrics.FORGE_CALLS.labels(forge=forge).inc()
    if error_status is not None:
        metrics.FORGE_ERRORS.labels(forge=forge, status=error_status).inc()
