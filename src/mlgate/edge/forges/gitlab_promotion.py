"""Promotion writes on GitLab: the branch and its commit, the merge request and its labels.

The :class:`GitLabPromotions` part of :class:`mlgate.edge.forges.gitlab.GitLabForge` (GitLab REST
API v4: repository_files, ``POST /projects/:id/repository/commits`` with ``start_branch``,
merge_requests). A promotion of n files takes 2 + n calls: one read per file on the target branch
(``GET .../repository/files/:path``: the REST API has no documented multi-file read; ``repository/tree``
lists blob ids without contents and ``repository/archive`` returns one directory as a tarball), one
commit that creates the branch and changes every file (``start_branch``), and ``POST /merge_requests``
with the label.

python-gitlab is imported at the top: this module is imported only with the forge, which
:func:`mlgate.edge.forges.make_forge` imports when it builds one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from gitlab.exceptions import GitlabHttpError

from mlgate.edge.forges.base import ForgeError, PromotionRequest, PromotionResult, fill_body

#: Bounded re-read/re-apply/retry when the branch moved under us (400/409 on the commit).
MOVE_RETRIES = 5


def enc_project(project: str | int) -> str:
    """A project id, or its path percent-encoded as one URL segment."""
    return str(project) if isinstance(project, int) or (str(project).isascii() and str(project).isdigit()) else quote(str(project), safe="")


class GitLabPromotions:
    """Writes a promotion: :meth:`open_promotion` and its steps (see the module docstring)."""

    # from GitLabForge: api_calls, _api(verb, path, query, body), _file(repo, path, ref)
    api_calls: int
    _api: Any
    _file: Any

    @staticmethod
    def _code(e: Exception) -> int:
        return int(getattr(e, "response_code", 0) or 0)

    def _commit(self, repo: str, branch: str, message: str, files: dict[str, tuple[str, str]],
                start_branch: str | None) -> str:
        actions = [
            {"action": "update", "file_path": path, "content": new, **({"last_commit_id": last} if last else {})}
            for path, (new, last) in files.items()
        ]
        body: dict[str, Any] = {"branch": branch, "commit_message": message, "actions": actions}
        if start_branch:
            body["start_branch"] = start_branch
        return self._api("post", f"/projects/{enc_project(repo)}/repository/commits", body=body)["id"]

    def _apply_on(self, repo: str, branch: str, req: PromotionRequest, diff: dict[str, tuple[str, str]],
                  start_branch: str | None = None,
                  reads: dict[str, tuple[str, str]] | None = None) -> tuple[str | None, bool]:
        """Commit the edits on ``branch`` (read at ``start_branch or branch``), retrying on conflicts;
        (the new commit or None, whether this commit created ``branch`` from ``start_branch``)."""
        for attempt in range(MOVE_RETRIES):
            changes: dict[str, tuple[str, str]] = {}
            for edit in req.edits:
                got = (reads or {}).get(edit.path) or self._file(repo, edit.path, start_branch or branch)
                if got is None:
                    raise ForgeError(f"{repo}: {edit.path} does not exist on {start_branch or branch}")
                old, last = got
                new = edit.apply(old)
                diff[edit.path] = (diff.get(edit.path, (old, new))[0], new)
                if new != old:
                    changes[edit.path] = (new, last)
            reads = None
            if not changes:
                return None, False
            try:
                return self._commit(repo, branch, req.message, changes, start_branch), start_branch is not None
            except GitlabHttpError as e:
                msg = str(e.error_message).lower()
                if self._code(e) == 400 and "already exists" in msg and start_branch:
                    start_branch = None  # the promotion branch exists: reuse it, re-read its files
                    continue
                if self._code(e) in (400, 409) and attempt + 1 < MOVE_RETRIES:
                    continue  # the file changed since we read it: re-read, re-apply
                raise ForgeError(f"GitLab refused the commit on {branch}: {e.error_message}", self._code(e)) from None
        raise ForgeError(f"{repo}: {branch} kept changing; gave up after {MOVE_RETRIES} attempts")

    def open_promotion(self, req: PromotionRequest) -> PromotionResult:
        """Commit the edits and open (or reuse) the promotion merge request.

        Idempotent: an existing branch ("A branch called ... already exists") is reused; an
        existing open MR (409 "Another open merge request already exists") is brought to the same
        end state as a new one (title, description, labels; docs "Update MR", ``add_labels``).
        ``created`` is True when this call opened the MR, also when it finds the MR open after a
        create-MR request whose answer was lost (a timeout, a dropped connection, a 5xx): when
        this call created the branch, no MR could exist for it before.
        """
        start = self.api_calls
        diff: dict[str, tuple[str, str]] = {}
        reads: dict[str, tuple[str, str]] = {}
        for edit in req.edits:
            got = self._file(req.repo, edit.path, req.base)
            if got is None:
                raise ForgeError(f"{req.repo}: {edit.path} does not exist on {req.base}")
            reads[edit.path] = got
            diff[edit.path] = (got[0], edit.apply(got[0]))

        def result(url=None, number=None, created=False, commit=None, branch=req.branch):
            return PromotionResult(url=url, number=number, created=created, changed=commit is not None,
                                   commit=commit, api_calls=self.api_calls - start, branch=branch, diff=diff)

        if all(o == n for o, n in diff.values()):
            return result(branch=req.base)
        if req.mode == "push":
            return result(commit=self._apply_on(req.repo, req.base, req, diff, None, reads)[0], branch=req.base)

        commit, fresh = self._apply_on(req.repo, req.branch, req, diff, req.base, reads)
        base = f"/projects/{enc_project(req.repo)}/merge_requests"
        created = True
        try:
            mr = self._api("post", base, body={
                "source_branch": req.branch, "target_branch": req.base, "title": req.title,
                "description": fill_body(req.body, diff), "labels": ",".join(req.labels), "remove_source_branch": True,
            })
        except GitlabHttpError as e:
            if self._code(e) != 409:
                raise ForgeError(f"GitLab refused to open the promotion MR: {e.error_message}", self._code(e)) from None
            mr = self._converge(base, req, diff)
            created = False
        return result(url=mr.get("web_url"), number=int(mr["iid"]), created=created or fresh, commit=commit)

    def _converge(self, base: str, req: PromotionRequest, diff: dict[str, tuple[str, str]]) -> dict:
        """The open MR of ``req.branch`` with this promotion's title, description and labels
        (``PUT .../merge_requests/:iid`` only when something differs; ``add_labels`` keeps labels
        set by hand)."""
        found = self._api("get", base, {"source_branch": req.branch, "target_branch": req.base, "state": "opened"})
        if not found:
            raise ForgeError(f"GitLab says an MR for {req.branch} exists but none is open", 409) from None
        mr = found[0]
        change: dict[str, Any] = {k: v for k, v in (("title", req.title), ("description", fill_body(req.body, diff)))
                                  if mr.get(k) != v}
        missing = [lb for lb in req.labels if lb not in (mr.get("labels") or [])]
        if missing:
            change["add_labels"] = ",".join(missing)
        return self._api("put", f"{base}/{mr['iid']}", body=change) if change else mr
