"""Promotion writes on GitHub: the branch, the commit(s), the pull request and its labels.

The :class:`GitHubPromotions` part of :class:`mlgate.edge.forges.github.GitHubForge`. Endpoints
(GitHub REST API): ``GET /repos/{o}/{r}/contents/{path}?ref=``, ``PUT /repos/{o}/{r}/contents/{path}``,
``GET /repos/{o}/{r}/branches/{branch}``, ``POST /repos/{o}/{r}/git/refs``,
``PATCH /repos/{o}/{r}/git/refs/heads/{branch}``, ``POST /repos/{o}/{r}/git/trees``,
``POST /repos/{o}/{r}/git/commits``, ``GET /repos/{o}/{r}/pulls?head=&state=open``,
``POST /repos/{o}/{r}/pulls``, ``PATCH /repos/{o}/{r}/pulls/{n}``, ``POST /repos/{o}/{r}/issues/{n}/labels``.

Promotion commits: the contents API needs 2 + 2·n calls for n files (branch read, n reads,
ref create, n writes); the git data API needs 4 + n (branch read with its tree, n reads,
tree, commit, ref). :func:`use_contents_api` picks the cheaper one.

PyGithub is imported at the top: this module is imported only with the forge, which
:func:`mlgate.edge.forges.make_forge` imports when it builds one.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from github import GithubException

from mlgate.edge.forges.base import ForgeError, PromotionRequest, PromotionResult, fill_body

#: Bounded re-read/re-apply/retry when the branch moved under us (409 / not fast-forward).
MOVE_RETRIES = 5


def use_contents_api(files: int) -> bool:
    """True when the contents API needs no more calls than the git data API for ``files`` files."""
    return 2 + 2 * files <= 4 + files


class GitHubPromotions:
    """Writes a promotion: :meth:`open_promotion` and its steps (see the module docstring)."""

    # from GitHubForge: api_calls, _api(verb, path, params, body), _contents(repo, path, ref)
    api_calls: int
    _api: Any
    _contents: Any

    @staticmethod
    def _status(e: Exception) -> int:
        return int(getattr(e, "status", 0) or 0)

    @staticmethod
    def _message(e: Exception) -> str:
        data = getattr(e, "data", None)
        parts = []
        if isinstance(data, dict):
            parts.append(str(data.get("message", "")))
            for err in data.get("errors") or []:
                parts.append(str(err.get("message", "")) if isinstance(err, dict) else str(err))
        return " ".join(parts) or str(e)

    def open_promotion(self, req: PromotionRequest) -> PromotionResult:
        """Commit the edits and open (or reuse) the promotion PR; see the module docstring.

        Idempotent: an existing branch (422 "Reference already exists") is reused and its
        file re-checked; an existing open PR (422 "A pull request already exists") is
        brought to the same end state as a new one (title, body, labels). ``created`` is True
        when this call opened the PR, also when it finds the PR open after a create-PR request
        whose answer was lost (a timeout, a dropped connection, a 5xx): when this call created
        the branch, no PR could exist for it before. In ``push`` mode the commit goes straight to ``req.base``. When a branch
        moved under us (409 / not a fast-forward) the files are re-read, the edits
        re-applied and the write retried, at most :data:`MOVE_RETRIES` times.
        When ``req.base`` already holds the new values nothing is written
        (``changed=False``, ``url=None``).
        """
        start = self.api_calls
        diff: dict[str, tuple[str, str]] = {}

        def result(url=None, number=None, created=False, commit=None, branch=req.branch):
            return PromotionResult(url=url, number=number, created=created, changed=commit is not None,
                                   commit=commit, api_calls=self.api_calls - start, branch=branch, diff=diff)

        base = self._branch(req.repo, req.base)
        if base is None:
            raise ForgeError(f"{req.repo}: branch {req.base} does not exist")
        reads: dict[str, tuple[str, str]] = {}
        for edit in req.edits:
            got = self._contents(req.repo, edit.path, base[0])
            if got is None:
                raise ForgeError(f"{req.repo}: {edit.path} does not exist on {req.base}")
            reads[edit.path] = got
            diff[edit.path] = (got[0], edit.apply(got[0]))
        if all(old == new for old, new in diff.values()):
            return result(branch=req.base)
        if req.mode == "push":
            return result(commit=self._push(req, base, reads, diff), branch=req.base)
        commit, fresh = self._commit_on_branch(req, base, reads, diff)
        pr, created = self._open_pull_request(req, diff)
        have = set() if created else {lb.get("name") for lb in pr.get("labels") or []}
        missing = [lb for lb in req.labels if lb not in have]
        if missing:  # REST "Add labels to an issue" adds, it never removes a label set by hand
            self._api("POST", f"/repos/{req.repo}/issues/{pr['number']}/labels", body={"labels": missing})
        return result(url=pr.get("html_url"), number=int(pr["number"]), created=created or fresh, commit=commit)

    def _push(self, req: PromotionRequest, base: tuple[str, str], reads: dict[str, tuple[str, str]],
              diff: dict[str, tuple[str, str]]) -> str | None:
        """``push`` mode: commit the edits straight on ``req.base``; the new commit sha or None."""
        if use_contents_api(len(req.edits)):
            commit = None
            for edit in req.edits:
                commit = self._put_file(req.repo, req.base, edit, req.message, reads[edit.path], diff) or commit
            return commit
        sha = self._git_data_commit(req.repo, base[0], base[1], req, diff, reads)
        try:
            self._api("PATCH", f"/repos/{req.repo}/git/refs/heads/{quote(req.base, safe='/')}",
                      body={"sha": sha, "force": False})
            return sha
        except GithubException as e:
            if self._status(e) not in (409, 422):
                raise ForgeError(f"GitHub refused to move {req.base}: {self._message(e)}", self._status(e)) from None
            return self._advance(req.repo, req.base, req, diff)

    def _commit_on_branch(self, req: PromotionRequest, base: tuple[str, str], reads: dict[str, tuple[str, str]],
                          diff: dict[str, tuple[str, str]]) -> tuple[str | None, bool]:
        """``pull-request`` mode: commit the edits on ``req.branch``, created from ``req.base``
        or (when it exists: an earlier attempt or promotion) re-checked; (the new commit or
        None, whether this call created the branch)."""
        commit = None
        if use_contents_api(len(req.edits)):
            fresh = self._create_ref(req.repo, req.branch, base[0])
            for edit in req.edits:  # on an existing branch (an earlier attempt or promotion): re-check its files
                known = reads[edit.path] if fresh else None
                commit = self._put_file(req.repo, req.branch, edit, req.message, known, diff) or commit
            return commit, fresh
        sha = self._git_data_commit(req.repo, base[0], base[1], req, diff, reads)
        if sha is not None and self._create_ref(req.repo, req.branch, sha):
            return sha, True
        return self._advance(req.repo, req.branch, req, diff), False

    def _open_pull_request(self, req: PromotionRequest, diff: dict[str, tuple[str, str]]) -> tuple[dict, bool]:
        """Open the promotion PR, or give the one already open this promotion's title and body
        (REST "Update a pull request", only when they differ); (PR, created)."""
        try:
            _, pr = self._api("POST", f"/repos/{req.repo}/pulls",
                              body={"title": req.title, "head": req.branch, "base": req.base, "body": fill_body(req.body, diff)})
            return pr, True
        except GithubException as e:
            msg = self._message(e).lower()
            if not (self._status(e) == 422 and "already exists" in msg):
                raise ForgeError(f"GitHub refused to open the promotion PR: {self._message(e)}", self._status(e)) from None
        pr = self._find_open_pr(req.repo, req.branch)
        if pr is None:
            raise ForgeError(f"GitHub says a PR for {req.branch} exists but none is open", 422) from None
        want = {"title": req.title, "body": fill_body(req.body, diff)}
        if any(pr.get(k) != v for k, v in want.items()):
            self._api("PATCH", f"/repos/{req.repo}/pulls/{pr['number']}", body=want)
            pr = {**pr, **want}
        return pr, False

    def _branch(self, repo: str, branch: str) -> tuple[str, str] | None:
        """(commit sha, tree sha) of a branch tip; None when the branch does not exist."""
        try:
            _, d = self._api("GET", f"/repos/{repo}/branches/{quote(branch, safe='')}")
        except GithubException as e:
            if self._status(e) == 404:
                return None
            raise
        return d["commit"]["sha"], d["commit"]["commit"]["tree"]["sha"]

    def _create_ref(self, repo: str, branch: str, sha: str) -> bool:
        """Create ``refs/heads/<branch>``; False when it already exists (422)."""
        try:
            self._api("POST", f"/repos/{repo}/git/refs", body={"ref": f"refs/heads/{branch}", "sha": sha})
            return True
        except GithubException as e:
            if self._status(e) == 422 and "already exists" in self._message(e).lower():
                return False
            raise ForgeError(f"GitHub refused to create branch {branch} in {repo}: {self._message(e)}",
                             self._status(e)) from None

    def _put_file(self, repo: str, branch: str, edit: Any, message: str, known: tuple[str, str] | None,
                  diff: dict[str, tuple[str, str]]) -> str | None:
        """Write one edited file with ``PUT contents`` on ``branch``; re-read and re-apply on 409.

        ``known``: (text, blob sha) already read for this branch's tip, saving a read.
        Returns the new commit sha, or None when the file already held the new text.
        """
        for attempt in range(MOVE_RETRIES):
            got = known if known is not None else self._contents(repo, edit.path, branch)
            known = None
            if got is None:
                raise ForgeError(f"{repo}: {edit.path} does not exist on {branch}")
            old, blob = got
            new = edit.apply(old)
            diff[edit.path] = (diff.get(edit.path, (old, new))[0], new)
            if new == old:
                return None
            try:
                _, d = self._api(
                    "PUT",
                    f"/repos/{repo}/contents/{quote(edit.path)}",
                    body={"message": message, "content": base64.b64encode(new.encode()).decode(),
                          "sha": blob, "branch": branch},
                )
                return d["commit"]["sha"]
            except GithubException as e:
                if self._status(e) in (409, 422) and attempt + 1 < MOVE_RETRIES:
                    continue  # the file changed under us: re-read, re-apply
                raise ForgeError(f"GitHub refused to update {edit.path} on {branch}: {self._message(e)}",
                                 self._status(e)) from None
        raise ForgeError(f"{repo}: {edit.path} on {branch} kept changing; gave up after {MOVE_RETRIES} attempts")

    def _git_data_commit(self, repo: str, parent: str, tree: str, req: PromotionRequest,
                         diff: dict[str, tuple[str, str]], reads: dict[str, tuple[str, str]] | None = None) -> str | None:
        """Create (not yet referenced) one commit holding every edit on top of ``parent``."""
        entries = []
        for edit in req.edits:
            got = (reads or {}).get(edit.path) or self._contents(repo, edit.path, parent)
            if got is None:
                raise ForgeError(f"{repo}: {edit.path} does not exist at {parent[:7]}")
            old = got[0]
            new = edit.apply(old)
            diff[edit.path] = (diff.get(edit.path, (old, new))[0], new)
            if new != old:
                entries.append({"path": edit.path, "mode": "100644", "type": "blob", "content": new})
        if not entries:
            return None
        _, t = self._api("POST", f"/repos/{repo}/git/trees", body={"base_tree": tree, "tree": entries})
        _, c = self._api("POST", f"/repos/{repo}/git/commits",
                         body={"message": req.message, "tree": t["sha"], "parents": [parent]})
        return c["sha"]

    def _advance(self, repo: str, branch: str, req: PromotionRequest, diff: dict[str, tuple[str, str]]) -> str | None:
        """Commit the edits on an existing ``branch`` (git data API), retrying when it moves."""
        for attempt in range(MOVE_RETRIES):
            tip = self._branch(repo, branch)
            if tip is None:
                raise ForgeError(f"{repo}: branch {branch} does not exist")
            sha = self._git_data_commit(repo, tip[0], tip[1], req, diff)
            if sha is None:
                return None
            try:
                self._api("PATCH", f"/repos/{repo}/git/refs/heads/{quote(branch, safe='/')}",
                          body={"sha": sha, "force": False})
                return sha
            except GithubException as e:
                if self._status(e) in (409, 422) and attempt + 1 < MOVE_RETRIES:
                    continue  # not a fast-forward: the branch moved; re-read and re-apply
                raise ForgeError(f"GitHub refused to move {branch}: {self._message(e)}", self._status(e)) from None
        raise ForgeError(f"{repo}: {branch} kept moving; gave up after {MOVE_RETRIES} attempts")

    def _find_open_pr(self, repo: str, branch: str) -> dict | None:
        owner = repo.split("/")[0]
        _, prs = self._api("GET", f"/repos/{repo}/pulls", {"head": f"{owner}:{branch}", "state": "open"})
        return prs[0] if prs else None
