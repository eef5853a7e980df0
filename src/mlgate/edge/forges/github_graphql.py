"""Promotion writes on GitHub through the GraphQL API: three round trips for any number of files.

The :class:`GitHubGraphQLPromotions` part of :class:`mlgate.edge.forges.github.GitHubForge`,
chosen by ``github_api: graphql`` (the default; ``rest`` keeps
:class:`~mlgate.edge.forges.github_promotion.GitHubPromotions`). Schema: GitHub's public GraphQL
schema (npm ``@octokit/graphql-schema``, ``schema.graphql``), which the test fake validates
every document and its variables against.

1. One query (:func:`read_document`): the repository id, the base branch head oid, the
   promotion branch (its node id and head oid, when it exists), every file to edit on both
   branches (``object(expression: "BRANCH:PATH") { ... on Blob { text } }``, one alias per
   file), the label ids (``label(name:)``, one alias per label) and the open PR of the branch.
2. One mutation document (:func:`write_document`) whose root fields run **in order** (GraphQL
   spec, October 2021, section 6.2.2 "Mutation": the root fields of a mutation are executed
   serially): ``createRef`` (no branch yet) or ``updateRef`` with ``force`` (a branch left
   without an open PR, e.g. by an attempt that died or a closed PR: reset to the base head),
   then ``createCommitOnBranch`` with ``expectedHeadOid`` (every changed file in one commit,
   contents base64), then ``createPullRequest`` (no open PR) or ``updatePullRequest`` (the open
   PR's title or body differ). A field whose input is already true is left out; nothing to
   change sends no mutation.
3. One label call: ``addLabelsToLabelable`` when every label exists, else REST "Add labels to
   an issue" (``POST /repos/{o}/{r}/issues/{n}/labels``), which also creates missing labels
   (GraphQL needs label ids). Nothing when the PR has its labels.

Concurrency and crashes: ``expectedHeadOid`` fences the commit, so a writer that moved the
branch between our read and our write makes ``createCommitOnBranch`` fail (GitHub answers
``errors`` with the data it could do); the promotion then starts again from the read, at most
:data:`MOVE_RETRIES` times. Each attempt plans from what it reads, so every half-done state
converges: a branch without a PR is reset and gets the commit and the PR; an open PR gets its
commit and title; a PR without its label gets the label on the next run.

GitHub Enterprise Server: ``createCommitOnBranch`` appeared on github.com on 2021-09-13
(changelog "A simpler API for authoring commits"), so GHES releases cut after it (3.3, December
2021, and later) are expected to have it; the GHES 3.16 to 3.21 GraphQL references list it
(checked). A server without it refuses the mutation document as a whole (nothing is written) and
the error says to set ``github_api: rest``.

PyGithub (its requester: auth, throttling, ``graphql_url``) is imported at the top: this module is
imported only with the forge, which :func:`mlgate.edge.forges.make_forge` imports when it builds one.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from github import GithubException

from mlgate.edge.forges.base import (
    ForgeBusy,
    ForgeError,
    PromotionRequest,
    PromotionResult,
    fill_body,
    forge_call,
    retry_after_seconds,
)
from mlgate.edge.forges.github_promotion import GitHubPromotions

#: ``github_api`` values: promotion PRs through GraphQL (3 round trips) or REST (GHES without
#: ``createCommitOnBranch``); everything else is REST either way.
APIS = ("graphql", "rest")

#: Attempts from the read when the branch moved under us (expectedHeadOid) or a create raced.
MOVE_RETRIES = 5
#: GraphQL error ``type`` values (and message fragments) that a fresh read and a new plan resolve.
RETRYABLE_TYPES = {"STALE_DATA", "UNPROCESSABLE", "CONFLICT"}
RETRYABLE_TEXT = ("expected branch to point to", "already exists", "no commits between", "pull and try again")


def read_document(files: int, labels: int) -> str:
    """The read query for ``files`` files and ``labels`` labels (aliases ``b<i>``/``h<i>``:
    file ``i`` on the base / promotion branch; ``l<j>``: label ``j``)."""
    decl = ["$owner: String!", "$name: String!", "$baseRef: String!", "$headRef: String!", "$head: String!"]
    decl += [f"$b{i}: String!, $h{i}: String!" for i in range(files)]
    decl += [f"$l{j}: String!" for j in range(labels)]
    blobs = "\n".join(f"    b{i}: object(expression: $b{i}) {{ ... on Blob {{ text }} }}\n"
                      f"    h{i}: object(expression: $h{i}) {{ ... on Blob {{ text }} }}" for i in range(files))
    lbls = "\n".join(f"    l{j}: label(name: $l{j}) {{ id }}" for j in range(labels))
    return (f"query MlgatePromotionRead({', '.join(decl)}) {{\n"
            "  repository(owner: $owner, name: $name) {\n"
            "    id\n"
            "    baseBranch: ref(qualifiedName: $baseRef) { target { oid } }\n"
            "    headBranch: ref(qualifiedName: $headRef) { id target { oid } }\n"
            "    pullRequests(headRefName: $head, states: [OPEN], first: 10) {\n"
            "      nodes { id number url title body baseRefName labels(first: 100) { nodes { name } } }\n"
            "    }\n"
            f"{blobs}\n{lbls}\n"
            "  }\n}\n")


#: The mutation root fields mlgate sends, in the order they must run, with their input type
#: and the selection asked back.
_WRITES = (
    ("createRef", "CreateRefInput", "ref { id target { oid } }"),
    ("updateRef", "UpdateRefInput", "ref { id target { oid } }"),
    ("createCommitOnBranch", "CreateCommitOnBranchInput", "commit { oid }"),
    ("createPullRequest", "CreatePullRequestInput", "pullRequest { id number url title body }"),
    ("updatePullRequest", "UpdatePullRequestInput", "pullRequest { id number url title body }"),
)


def write_document(fields: list[str]) -> str:
    """One mutation running ``fields`` (names from :data:`_WRITES`) in their fixed order, each
    with its whole input as the variable ``$<field>``."""
    chosen = [w for w in _WRITES if w[0] in fields]
    decl = ", ".join(f"${name}: {typ}!" for name, typ, _ in chosen)
    body = "\n".join(f"  {name}(input: ${name}) {{ {sel} }}" for name, _, sel in chosen)
    return f"mutation MlgatePromotionWrite({decl}) {{\n{body}\n}}\n"


LABEL_DOCUMENT = ("mutation MlgatePromotionLabels($input: AddLabelsToLabelableInput!) {\n"
                  "  addLabelsToLabelable(input: $input) { clientMutationId }\n}\n")


@dataclass
class Snapshot:
    """What the read query saw. ``base_files``/``head_files``: path → text (None: no such file)."""

    repo_id: str
    base_oid: str
    head_ref_id: str | None
    head_oid: str | None
    pr: dict[str, Any] | None
    #: another open PR from the same branch into another base: the branch is in use, never reset
    branch_in_use: bool
    base_files: dict[str, str | None]
    head_files: dict[str, str | None]
    label_ids: dict[str, str | None] = field(default_factory=dict)


def split_message(message: str) -> dict[str, str]:
    """A commit message as GraphQL ``CommitMessage`` (``headline``: the first line; ``body``: the rest)."""
    headline, _, rest = message.partition("\n")
    out = {"headline": headline.strip() or "mlgate promotion"}
    if rest.strip():
        out["body"] = rest.strip("\n")
    return out


def _retryable(errors: list[dict[str, Any]]) -> bool:
    return all(str(e.get("type") or "") in RETRYABLE_TYPES
               or any(t in str(e.get("message") or "").lower() for t in RETRYABLE_TEXT) for e in errors)


class GitHubGraphQLPromotions(GitHubPromotions):
    """Writes a promotion in three GraphQL round trips (see the module docstring); ``api="rest"``
    hands :meth:`open_promotion` to :class:`GitHubPromotions`."""

    # from GitHubForge: api, api_calls, base_url, _gh (PyGithub), _classify, _api(verb, path, params, body)
    api: str
    api_calls: int
    base_url: str
    _gh: Any
    _classify: Any
    _api: Any

    def open_promotion(self, req: PromotionRequest) -> PromotionResult:
        """Commit the edits and open (or update) the promotion PR: GraphQL (3 round trips) or REST,
        per ``api``; the same contract either way (see :meth:`GitHubPromotions.open_promotion`)."""
        if self.api == "graphql":
            return self._open_promotion_graphql(req)
        return super().open_promotion(req)

    def _graphql(self, document: str, variables: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """One GraphQL request (``POST /graphql``; GHES ``/api/graphql``, PyGithub's ``graphql_url``)
        with the REST calls' retries; (``data``, ``errors``). GitHub answers 200 with ``errors`` for
        a refused or partly done operation, so both are returned.

        Raises:
            ForgeError: a 4xx (bad credentials, no permission). ForgeBusy: as every forge call.
        """
        req = self._gh.requester

        def count() -> None:
            self.api_calls += 1

        try:
            _, out = forge_call(
                "github", self.base_url, "GitHub POST /graphql",
                lambda: req.requestJsonAndCheck("POST", req.graphql_url, input={"query": document, "variables": variables}),
                http_error=GithubException, status_of=lambda e: e.status, classify=self._classify,
                retry_after_of=lambda e: retry_after_seconds(e.headers), on_attempt=count,
            )
        except GithubException as e:
            raise ForgeError(f"GitHub refused a GraphQL request: {e.status} {self._message(e)}", e.status) from None
        out = out if isinstance(out, dict) else {}
        return out.get("data"), graphql_errors(out.get("errors"))

    def _read(self, req: PromotionRequest) -> Snapshot:
        owner, name = req.repo.split("/", 1)
        variables: dict[str, Any] = {"owner": owner, "name": name, "baseRef": f"refs/heads/{req.base}",
                                     "headRef": f"refs/heads/{req.branch}", "head": req.branch}
        for i, edit in enumerate(req.edits):
            variables[f"b{i}"] = f"{req.base}:{edit.path}"
            variables[f"h{i}"] = f"{req.branch}:{edit.path}"
        for j, label in enumerate(req.labels):
            variables[f"l{j}"] = label
        data, errors = self._graphql(read_document(len(req.edits), len(req.labels)), variables)
        repo = (data or {}).get("repository")
        if errors or not repo:
            raise ForgeError(f"GitHub GraphQL could not read {req.repo}: {_messages(errors)}", 404 if not repo else 0)
        base, head = repo.get("baseBranch"), repo.get("headBranch")
        if not base:
            raise ForgeError(f"{req.repo}: branch {req.base} does not exist")
        text = lambda node: (node or {}).get("text")  # noqa: E731
        prs = (repo.get("pullRequests") or {}).get("nodes") or []
        ours = [p for p in prs if p.get("baseRefName") == req.base]
        return Snapshot(
            repo_id=repo["id"], base_oid=base["target"]["oid"],
            head_ref_id=head["id"] if head else None, head_oid=head["target"]["oid"] if head else None,
            pr=ours[0] if ours else None, branch_in_use=bool(prs),
            base_files={e.path: text(repo.get(f"b{i}")) for i, e in enumerate(req.edits)},
            head_files={e.path: text(repo.get(f"h{i}")) for i, e in enumerate(req.edits)},
            label_ids={lb: (repo.get(f"l{j}") or {}).get("id") for j, lb in enumerate(req.labels)},
        )

    def _open_promotion_graphql(self, req: PromotionRequest) -> PromotionResult:
        """:meth:`GitHubForge.open_promotion` through GraphQL: same contract as the REST path
        (idempotent; ``created``: this call opened the PR, also when its create's answer was lost;
        ``changed=False, url=None`` when ``req.base`` already holds the new values).

        Raises:
            ForgeError: GitHub refused (not a race), or the branch kept moving for
            :data:`MOVE_RETRIES` attempts. ForgeBusy: rate limited or unreachable.
        """
        start = self.api_calls
        diff: dict[str, tuple[str, str]] = {}
        sent_create = sent_commit = False
        commit: str | None = None
        pr: dict[str, Any] | None = None
        snap: Snapshot | None = None
        for attempt in range(MOVE_RETRIES):
            snap = self._read(req)
            for edit in req.edits:
                old = snap.base_files[edit.path]
                if old is None:
                    raise ForgeError(f"{req.repo}: {edit.path} does not exist on {req.base}")
                diff[edit.path] = (old, edit.apply(old))
            if all(o == n for o, n in diff.values()):
                return PromotionResult(url=None, number=None, created=False, changed=False, commit=None,
                                       api_calls=self.api_calls - start, branch=req.base, diff=diff)
            variables, fields = self._plan(req, snap, diff)
            if not fields:  # in its end state (after a write whose answer was lost: that write's commit)
                pr, commit = snap.pr, commit or (snap.head_oid if sent_commit else None)
                break
            sent_create = sent_create or "createPullRequest" in fields
            sent_commit = sent_commit or "createCommitOnBranch" in fields
            data, errors = self._graphql(write_document(fields), variables)
            data = data or {}
            commit = ((data.get("createCommitOnBranch") or {}).get("commit") or {}).get("oid") or commit
            if not errors:
                pr = ((data.get("createPullRequest") or data.get("updatePullRequest") or {}).get("pullRequest")
                      or snap.pr)
                break
            if not _retryable(errors) or attempt + 1 == MOVE_RETRIES:
                raise ForgeError(f"GitHub refused the promotion of {req.repo} on {req.branch}: {_messages(errors)}"
                                 + _rest_hint(errors))
        if req.mode == "push":
            return PromotionResult(url=None, number=None, created=False, changed=commit is not None, commit=commit,
                                   api_calls=self.api_calls - start, branch=req.base, diff=diff)
        if pr is None or snap is None:
            raise ForgeError(f"{req.repo}: no promotion PR for {req.branch} after {MOVE_RETRIES} attempts")
        self._label(req, snap, pr)
        return PromotionResult(url=pr.get("url"), number=int(pr["number"]), created=sent_create, changed=commit is not None,
                               commit=commit, api_calls=self.api_calls - start, branch=req.branch, diff=diff)

    def _plan(self, req: PromotionRequest, snap: Snapshot,
              diff: dict[str, tuple[str, str]]) -> tuple[dict[str, Any], list[str]]:
        """(variables, root fields) of the write for what ``snap`` saw; no fields: nothing to write."""
        variables: dict[str, Any] = {}
        fields: list[str] = []
        reuse = snap.head_oid is not None and snap.branch_in_use
        if req.mode == "push":
            branch, expected, current = req.base, snap.base_oid, snap.base_files
        elif reuse:  # an open PR on the branch: it carries on (a human may have pushed to it)
            branch, expected, current = req.branch, snap.head_oid, snap.head_files
        else:  # no open PR: the branch starts at the base head, new or reset
            branch, expected, current = req.branch, snap.base_oid, snap.base_files
            if snap.head_oid is None:
                fields.append("createRef")
                variables["createRef"] = {"repositoryId": snap.repo_id, "name": f"refs/heads/{req.branch}",
                                          "oid": snap.base_oid}
            elif snap.head_oid != snap.base_oid:
                fields.append("updateRef")
                variables["updateRef"] = {"refId": snap.head_ref_id, "oid": snap.base_oid, "force": True}
        additions = []
        for edit in req.edits:
            old = current.get(edit.path)
            if old is None:
                raise ForgeError(f"{req.repo}: {edit.path} does not exist on {branch}")
            new = edit.apply(old)
            if new != old:
                additions.append({"path": edit.path, "contents": base64.b64encode(new.encode()).decode()})
        if additions:
            fields.append("createCommitOnBranch")
            variables["createCommitOnBranch"] = {
                "branch": {"repositoryNameWithOwner": req.repo, "branchName": branch}, "expectedHeadOid": expected,
                "fileChanges": {"additions": additions}, "message": split_message(req.message)}
        if req.mode == "push":
            return variables, fields
        body = fill_body(req.body, diff)
        if snap.pr is None:
            fields.append("createPullRequest")
            variables["createPullRequest"] = {"repositoryId": snap.repo_id, "baseRefName": req.base,
                                              "headRefName": req.branch, "title": req.title, "body": body}
        elif snap.pr.get("title") != req.title or snap.pr.get("body") != body:
            fields.append("updatePullRequest")
            variables["updatePullRequest"] = {"pullRequestId": snap.pr["id"], "title": req.title, "body": body}
        return variables, fields

    def _label(self, req: PromotionRequest, snap: Snapshot, pr: dict[str, Any]) -> None:
        """Add the labels the PR lacks (never removes one set by hand): ``addLabelsToLabelable``
        when all exist in the repository, else REST "Add labels to an issue" (creates them)."""
        have = {n.get("name") for n in ((pr.get("labels") or {}).get("nodes") or [])}
        missing = [lb for lb in req.labels if lb not in have]
        if not missing:
            return
        ids = [snap.label_ids.get(lb) for lb in missing]
        if all(ids):
            _, errors = self._graphql(LABEL_DOCUMENT, {"input": {"labelableId": pr["id"], "labelIds": ids}})
            if errors:
                raise ForgeError(f"GitHub refused to label PR #{pr['number']}: {_messages(errors)}")
            return
        self._api("POST", f"/repos/{req.repo}/issues/{int(pr['number'])}/labels", body={"labels": missing})


def _rest_hint(errors: list[dict[str, Any]]) -> str:
    """A hint for a server whose schema lacks a mutation mlgate sends (an older GHES)."""
    codes = {str((e.get("extensions") or {}).get("code")) for e in errors}
    if codes & {"undefinedField", "argumentNotAccepted", "undefinedType", "variableMismatch"}:
        return (" (this server's GraphQL schema lacks what mlgate sends: GitHub Enterprise Server before 3.3 has "
                "no createCommitOnBranch; set github_api: rest, or MLGATE_GITHUB_API=rest)")
    return ""


def _messages(errors: list[dict[str, Any]] | None) -> str:
    return "; ".join(f"{e.get('type') or 'ERROR'}: {e.get('message')}" for e in errors or []) or "no data"


def graphql_errors(errors: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """``errors`` of a GraphQL answer; raises :class:`ForgeBusy` for GitHub's ``RATE_LIMITED``
    (GraphQL "Rate limits and query limits": the answer is 200 with that error type)."""
    errors = list(errors or [])
    if any(str(e.get("type")) == "RATE_LIMITED" for e in errors):
        raise ForgeBusy(f"GitHub GraphQL rate limited: {_messages(errors)}")
    return errors
