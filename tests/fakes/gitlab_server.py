"""A fake GitLab REST API v4 on 127.0.0.1, backed by real git repositories.

GitLab publishes no complete OpenAPI description of these endpoints (see
shared/specs/gitlab/SOURCE.md), so each route here declares the documented request shape
(path, allowed and required query/body fields with their types, from docs.gitlab.com/api:
merge_requests, merge_request_approvals, members, notes, commits, repository_files,
commits#set-the-pipeline-status-of-a-commit, branches, users, repositories#compare-branches-tags-or-commits) and answers with the
documented response shape; the approvals and member answers start from the documented
examples copied into tests/fixtures/gitlab/. A request to an unknown route, with an unknown
or missing field, or a wrongly typed one is answered 400/404 **and recorded in ``errors``**.

Authentication: ``PRIVATE-TOKEN`` header, a token from ``tokens`` (token → username).

Merge requests may come from a fork (:meth:`FakeGitLab.fork`, ``open_mr(source_project=...)``);
``PUT .../merge_requests/:iid`` takes ``state_event`` ``close``/``reopen`` (a merged MR stays merged);
projects carry their ``http_url_to_repo`` on the fake's host. :meth:`FakeGitLab.merge_target_into` pushes a
merge of the target branch as an MR's new head (GitLab keeps ``approved_by`` unless the project resets
approvals on push; the fake keeps them). Test controls: :meth:`FakeGitLab.fail_next`, :meth:`~FakeGitLab.on_request`
(a callback before a request), :meth:`~FakeGitLab.after_request` (after it took effect, before its answer) and
:meth:`~FakeGitLab.drop_answer` (do the work, close the connection without an answer).
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.github_server import Git, GitError
from tests.fakes.http import serve_in_thread

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gitlab"


def _example(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# route: (method, regex, handler name, allowed query {name: type}, body {name: (type, required)})
_S, _I, _B, _L = str, int, bool, list
ROUTES: list[tuple[str, str, str, dict[str, type], dict[str, tuple[type, bool]]]] = [
    ("GET", r"/projects/(?P<id>[^/]+)", "project_get", {}, {}),
    ("GET", r"/projects/(?P<id>[^/]+)/repository/files/(?P<path>[^/]+)", "get_file", {"ref": _S}, {}),
    ("GET", r"/projects/(?P<id>[^/]+)/repository/branches/(?P<branch>[^/]+)", "get_branch", {}, {}),
    ("POST", r"/projects/(?P<id>[^/]+)/repository/commits", "post_commit", {},
     {"branch": (_S, True), "commit_message": (_S, True), "actions": (_L, True), "start_branch": (_S, False),
      "start_sha": (_S, False), "author_email": (_S, False), "author_name": (_S, False), "force": (_B, False)}),
    ("GET", r"/projects/(?P<id>[^/]+)/merge_requests", "list_mrs",
     {"source_branch": _S, "target_branch": _S, "state": _S, "per_page": _I, "page": _I}, {}),
    ("POST", r"/projects/(?P<id>[^/]+)/merge_requests", "create_mr", {},
     {"source_branch": (_S, True), "target_branch": (_S, True), "title": (_S, True), "description": (_S, False),
      "labels": (_S, False), "remove_source_branch": (_B, False), "squash": (_B, False)}),
    ("GET", r"/projects/(?P<id>[^/]+)/merge_requests/(?P<iid>\d+)", "get_mr", {}, {}),
    ("PUT", r"/projects/(?P<id>[^/]+)/merge_requests/(?P<iid>\d+)", "update_mr", {},
     {"description": (_S, False), "title": (_S, False), "state_event": (_S, False), "labels": (_S, False),
      "add_labels": (_S, False)}),
    ("GET", r"/projects/(?P<id>[^/]+)/merge_requests/(?P<iid>\d+)/approvals", "approvals", {}, {}),
    # doc/api/merge_requests.md "Merge a merge request" (retrain auto_merge, issue 14)
    ("PUT", r"/projects/(?P<id>[^/]+)/merge_requests/(?P<iid>\d+)/merge", "merge_mr", {},
     {"merge_commit_message": (_S, False), "should_remove_source_branch": (_B, False), "squash": (_B, False),
      "sha": (_S, False), "auto_merge": (_B, False)}),
    # doc/api/pipelines.md "Create a new pipeline" and "Get a single pipeline" (retrain backend gitlab, issue 14)
    ("POST", r"/projects/(?P<id>[^/]+)/pipeline", "create_pipeline", {}, {"ref": (_S, True), "variables": (_L, False)}),
    ("GET", r"/projects/(?P<id>[^/]+)/pipelines/(?P<pipeline_id>\d+)", "get_pipeline", {}, {}),
    ("GET", r"/projects/(?P<id>[^/]+)/merge_requests/(?P<iid>\d+)/notes", "list_notes",
     {"per_page": _I, "page": _I, "sort": _S, "order_by": _S}, {}),
    ("POST", r"/projects/(?P<id>[^/]+)/merge_requests/(?P<iid>\d+)/notes", "create_note", {},
     {"body": (_S, True), "internal": (_B, False)}),
    ("PUT", r"/projects/(?P<id>[^/]+)/merge_requests/(?P<iid>\d+)/notes/(?P<note>\d+)", "update_note", {},
     {"body": (_S, True)}),
    ("POST", r"/projects/(?P<id>[^/]+)/statuses/(?P<sha>[0-9a-f]{40})", "post_status", {},
     {"state": (_S, True), "name": (_S, False), "context": (_S, False), "description": (_S, False),
      "target_url": (_S, False), "ref": (_S, False), "pipeline_id": (_I, False)}),
    ("GET", r"/projects/(?P<id>[^/]+)/members/all/(?P<user_id>\d+)", "member", {}, {}),
    ("GET", r"/groups/(?P<id>[^/]+)/members/all/(?P<user_id>\d+)", "group_member", {}, {}),
    ("GET", r"/users", "users", {"username": _S, "search": _S, "per_page": _I, "page": _I}, {}),
    ("GET", r"/user", "current_user", {}, {}),  # doc/api/users.md "Get the current user"
    # MR commits (doc/api/merge_requests.md "Get single merge request commits")
    ("GET", r"/projects/(?P<id>[^/]+)/merge_requests/(?P<iid>\d+)/commits", "mr_commits",
     {"per_page": _I, "page": _I}, {}),
    # project members incl. inherited (doc/api/members.md "List all members of a group or project")
    ("GET", r"/projects/(?P<id>[^/]+)/members/all", "list_members",
     {"query": _S, "per_page": _I, "page": _I}, {}),
    # project events (doc/api/events.md "List a project's visible events"; push events carry push_data)
    ("GET", r"/projects/(?P<id>[^/]+)/events", "project_events",
     {"action": _S, "target_type": _S, "per_page": _I, "page": _I, "sort": _S}, {}),
    # compare (doc/api/repositories.md "Compare branches, tags or commits"; from and to are required)
    ("GET", r"/projects/(?P<id>[^/]+)/repository/compare", "compare",
     {"from": _S, "to": _S, "from_project_id": _I, "straight": _S, "unidiff": _S}, {}),
]
_COMPILED = [(m, re.compile("^/api/v4" + rx + "$"), h, q, b) for m, rx, h, q, b in ROUTES]
_ACTIONS = {"create", "delete", "move", "update", "chmod"}
_STATUS_STATES = {"pending", "running", "success", "failed", "canceled", "skipped"}


class HTTPError(Exception):
    def __init__(self, status: int, message: Any):
        super().__init__(str(message))
        self.status = status
        self.message = message


@dataclass
class MR:
    iid: int
    id: int
    title: str
    description: str
    source_branch: str
    target_branch: str
    author: str
    state: str = "opened"
    labels: list[str] = field(default_factory=list)
    approved_by: list[str] = field(default_factory=list)
    merge_commit_sha: str | None = None
    created_at: str = ""
    source_project: str | None = None  # path of the fork holding ``source_branch`` (None: this project)


@dataclass
class Note:
    id: int
    mr: int
    author: str
    body: str
    created_at: str
    updated_at: str


@dataclass
class Project:
    id: int
    path: str
    git: Git
    default_branch: str = "main"
    members: dict[str, int] = field(default_factory=dict)  # username -> access level
    inherited: set[str] = field(default_factory=set)  # members whose level comes from a parent group
    mrs: dict[int, MR] = field(default_factory=dict)
    notes: dict[int, Note] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    approvals_required: int = 1
    events: list[dict[str, Any]] = field(default_factory=list)  # push events, oldest first


class FakeGitLab:
    """The fake; ``url`` is the instance root (python-gitlab appends ``/api/v4``)."""

    def __init__(self, workdir: Path, *, tokens: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.tokens = dict(tokens or {})
        self.projects: dict[str, Project] = {}
        self.users: dict[str, int] = {}
        self.groups: dict[str, set[str]] = {}
        self.errors: list[str] = []
        self.requests: list[tuple[str, str, int]] = []
        self._faults: list[dict[str, Any]] = []
        #: (method, path regex, when: "before" | "after" | "drop", callback) run once; see on_request
        self._hooks: list[tuple[str, re.Pattern[str], str, Any]] = []
        self._ids = itertools.count(100)
        #: pipelines by id (POST .../pipeline): project, ref, sha, variables, status; finish_pipeline ends one
        self.pipelines: dict[int, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "FakeGitLab":
        self._server, self.url = serve_in_thread(self._serve)
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # ---------------------------------------------------------------- test controls

    def user(self, username: str) -> int:
        with self._lock:
            if username not in self.users:
                self.users[username] = next(self._ids)
            return self.users[username]

    def add_project(self, path: str, files: dict[str, str], *, default_branch: str = "main") -> Project:
        g = Git(self.workdir / (path.replace("/", "__") + ".git"), default_branch)
        blobs = {p: g.hash_blob(t.encode()) for p, t in files.items()}
        sha = g.commit_tree(g.make_tree(None, blobs), [], "initial commit")
        g.set_ref(default_branch, sha)
        p = Project(id=next(self._ids), path=path, git=g, default_branch=default_branch)
        self.projects[path] = p
        return p

    def commit(self, path: str, branch: str, files: dict[str, str | None], *, author: str = "root",
               message: str = "change") -> str:
        p = self.projects[path]
        g = p.git
        with g.lock:
            parent = g.branch(branch) or g.branch(p.default_branch)
            tree = g.make_tree(g.tree_of(parent), {k: (g.hash_blob(v.encode()) if v is not None else None)
                                                   for k, v in files.items()})
            sha = g.commit_tree(tree, [parent], message, author)
            g.set_ref(branch, sha)
        uid = self.user(author)
        p.events.append({"id": next(self._ids), "project_id": p.id, "action_name": "pushed to", "target_id": None,
                         "target_type": None, "author_id": uid, "target_title": None, "created_at": _now(),
                         "author": self._user_obj(author), "author_username": author,
                         "push_data": {"commit_count": 1, "action": "pushed", "ref_type": "branch", "commit_from": parent,
                                       "commit_to": sha, "ref": branch, "commit_title": message, "ref_count": None}})
        return sha

    def fork(self, path: str, namespace: str) -> Project:
        """A fork of project ``path`` in ``namespace`` (``<namespace>/<name>``), with the same history."""
        src = self.projects[path]
        name = f"{namespace}/{path.rsplit('/', 1)[-1]}"
        g = Git(self.workdir / (name.replace("/", "__") + ".git"), src.default_branch)
        from tests.fakes.github_server import _git

        _git(g.path, "fetch", "--quiet", str(src.git.path), "+refs/heads/*:refs/heads/*")
        p = Project(id=next(self._ids), path=name, git=g, default_branch=src.default_branch)
        self.projects[name] = p
        return p

    def open_mr(self, path: str, source: str, *, author: str = "root", title: str = "Change",
                description: str = "", source_project: str | None = None) -> MR:
        """Open an MR from branch ``source`` (of the fork ``source_project`` when given)."""
        p = self.projects[path]
        self.user(author)
        with self._lock:
            iid = len(p.mrs) + 1
            mr = MR(iid=iid, id=next(self._ids), title=title, description=description, source_branch=source,
                    target_branch=p.default_branch, author=author, created_at=_now(),
                    source_project=source_project if source_project and source_project != path else None)
            p.mrs[iid] = mr
        return mr

    def set_access(self, path: str, username: str, level: int, *, inherited: bool = False) -> None:
        """``username``'s access level on project ``path``; ``inherited``: through a parent group (then
        "Get a single project" shows ``permissions.project_access: null``, as GitLab does)."""
        self.user(username)
        self.projects[path].members[username] = level
        if inherited:
            self.projects[path].inherited.add(username)
        else:
            self.projects[path].inherited.discard(username)

    def approve(self, path: str, iid: int, username: str) -> None:
        self.user(username)
        self.projects[path].mrs[iid].approved_by.append(username)

    def merge_target_into(self, path: str, iid: int, *, author: str = "root",
                          extra_files: dict[str, str | None] | None = None) -> str:
        """Merge the target branch into MR ``iid``'s source branch; returns the new head. ``extra_files``
        are changed in the merge commit itself (the merge brings more than the target's changes)."""
        from tests.fakes.github_server import _git

        p = self.projects[path]
        mr = p.mrs[iid]
        g = p.git
        with g.lock:
            old, base = g.branch(mr.source_branch), g.branch(mr.target_branch)
            assert old and base and mr.source_project is None
            tree = _git(g.path, "merge-tree", "--write-tree", old, base).split()[0]
            if extra_files:
                tree = g.make_tree(tree, {k: (g.hash_blob(v.encode()) if v is not None else None)
                                          for k, v in extra_files.items()})
            new = g.commit_tree(tree, [old, base], f"Merge branch '{mr.target_branch}' into '{mr.source_branch}'",
                                author)
            g.set_ref(mr.source_branch, new, old)
        self.user(author)
        return new

    def fail_next(self, method: str, path_regex: str, status: int, count: int = 1) -> None:
        self._faults.append({"method": method, "rx": re.compile(path_regex), "status": status, "count": count})

    def on_request(self, method: str, path_regex: str, callback: Any) -> None:
        """Run ``callback()`` once before the next matching request is served."""
        self._hooks.append((method.upper(), re.compile(path_regex), "before", callback))

    def after_request(self, method: str, path_regex: str, callback: Any) -> None:
        """Run ``callback()`` once after the next matching request took effect, before its answer
        is sent (e.g. kill the client right after its create-MR call went through)."""
        self._hooks.append((method.upper(), re.compile(path_regex), "after", callback))

    def drop_answer(self, method: str, path_regex: str) -> None:
        """Serve the next matching request (its effect happens), then close the connection
        without an answer, as a proxy timing out after GitLab did the work."""
        self._hooks.append((method.upper(), re.compile(path_regex), "drop", None))

    def _run_hooks(self, method: str, path: str, when: str) -> bool:
        """Run (and remove) the first hook of kind ``when`` matching; True when one matched."""
        with self._lock:
            hit = next((hk for hk in self._hooks if hk[0] == method and hk[2] == when and hk[1].search(path)), None)
            if hit is not None:
                self._hooks.remove(hit)
        if hit is not None and hit[3] is not None:
            hit[3]()
        return hit is not None

    # ---------------------------------------------------------------- HTTP

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        method, path = h.command, split.path
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        status: int
        body: Any
        try:
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                raise HTTPError(400, "body is not JSON")
            self._run_hooks(method, path, "before")
            login = self.tokens.get(h.headers.get("PRIVATE-TOKEN") or "")
            if login is None:
                raise HTTPError(401, "401 Unauthorized")
            route = None
            for m, rx, name, allowed_q, allowed_b in _COMPILED:
                mm = rx.match(path)
                if mm and m == method:
                    route = (name, {k: unquote(v) for k, v in mm.groupdict().items()}, allowed_q, allowed_b)
                    break
            if route is None:
                self.errors.append(f"{method} {path}: not a GitLab API route the fake knows")
                raise HTTPError(404, "404 Not Found")
            name, params, allowed_q, allowed_b = route
            problems = self._check(query, data, allowed_q, allowed_b)
            if problems:
                self.errors.append(f"{method} {path}: invalid request: {'; '.join(problems)}")
                raise HTTPError(400, {"error": "; ".join(problems)})
            for f in self._faults:
                if f["method"] == method and f["rx"].search(path) and f["count"] > 0:
                    f["count"] -= 1
                    raise HTTPError(f["status"], "fault injected")
            status, body = getattr(self, "_" + name)(params=params, query=query, body=data or {}, login=login)
            self._run_hooks(method, path, "after")
            if self._run_hooks(method, path, "drop"):
                self.requests.append((method, path, 0))
                h.close_connection = True
                return
        except HTTPError as e:
            status, body = e.status, e.message if isinstance(e.message, dict) else {"message": e.message}
        except Exception as e:
            self.errors.append(f"{method} {path}: fake crashed: {type(e).__name__}: {e}")
            status, body = 500, {"message": "500 Internal Server Error"}
        self.requests.append((method, path, status))
        out = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(out)))
        h.end_headers()
        h.wfile.write(out)

    @staticmethod
    def _check(query: dict[str, str], data: Any, allowed_q: dict[str, type], allowed_b: dict[str, tuple[type, bool]]) -> list[str]:
        out = []
        for k, v in query.items():
            if k not in allowed_q:
                out.append(f"unknown query parameter {k!r}")
            elif allowed_q[k] is int and not v.isdigit():
                out.append(f"query parameter {k!r} must be an integer")
        if data is not None and not isinstance(data, dict):
            return out + ["body must be a JSON object"]
        data = data or {}
        for k, v in data.items():
            if k not in allowed_b:
                out.append(f"unknown body field {k!r}")
            elif not isinstance(v, allowed_b[k][0]) or (allowed_b[k][0] is int and isinstance(v, bool)):
                out.append(f"body field {k!r} must be {allowed_b[k][0].__name__}")
        for k, (_, required) in allowed_b.items():
            if required and k not in data:
                out.append(f"missing required body field {k!r}")
        return out

    # ---------------------------------------------------------------- shapes

    def _project(self, params: dict[str, str]) -> Project:
        key = params["id"]
        for p in self.projects.values():
            if key == p.path or key == str(p.id):
                return p
        raise HTTPError(404, "404 Project Not Found")

    def _user_obj(self, username: str) -> dict[str, Any]:
        uid = self.user(username)
        return {"id": uid, "username": username, "name": username.title(), "state": "active",
                "avatar_url": None, "web_url": f"{self.url}/{username}"}

    def _mr_obj(self, p: Project, mr: MR) -> dict[str, Any]:
        src = self.projects[mr.source_project] if mr.source_project else p
        sha = src.git.branch(mr.source_branch)
        return {
            "id": mr.id, "iid": mr.iid, "project_id": p.id, "title": mr.title, "description": mr.description,
            "state": mr.state, "created_at": mr.created_at, "updated_at": _now(), "target_branch": mr.target_branch,
            "source_branch": mr.source_branch, "author": self._user_obj(mr.author), "source_project_id": src.id,
            "target_project_id": p.id, "labels": list(mr.labels), "draft": False, "work_in_progress": False,
            "merge_when_pipeline_succeeds": False, "merge_status": "can_be_merged",
            "detailed_merge_status": "mergeable", "sha": sha, "merge_commit_sha": mr.merge_commit_sha,
            "squash_commit_sha": None, "user_notes_count": len([n for n in p.notes.values() if n.mr == mr.iid]),
            "should_remove_source_branch": None, "force_remove_source_branch": True,
            "web_url": f"{self.url}/{p.path}/-/merge_requests/{mr.iid}", "references": {
                "short": f"!{mr.iid}", "relative": f"!{mr.iid}", "full": f"{p.path}!{mr.iid}"},
        }

    def _note_obj(self, n: Note) -> dict[str, Any]:
        return {"id": n.id, "type": None, "body": n.body, "attachment": None, "author": self._user_obj(n.author),
                "created_at": n.created_at, "updated_at": n.updated_at, "system": False, "noteable_id": n.mr,
                "noteable_type": "MergeRequest", "noteable_iid": n.mr, "resolvable": False, "confidential": False,
                "internal": False}

    # ---------------------------------------------------------------- routes

    def _project_get(self, params, login, **_):
        p = self._project(params)
        host = urlsplit(self.url).hostname
        # docs "Get a single project": ``permissions`` of the caller; project_access for a direct member,
        # null otherwise (GitLab also leaves it null for access inherited from a group: ``inherited``)
        level = p.members.get(login)
        direct = level is not None and login not in p.inherited
        return 200, {"id": p.id, "path_with_namespace": p.path, "default_branch": p.default_branch,
                     "web_url": f"{self.url}/{p.path}", "name": p.path.rsplit("/", 1)[-1],
                     "http_url_to_repo": f"{self.url}/{p.path}.git", "ssh_url_to_repo": f"git@{host}:{p.path}.git",
                     "permissions": {"project_access": {"access_level": level, "notification_level": 3}
                                     if direct else None, "group_access": None}}

    def _current_user(self, login, **_):
        # docs users "Get the current user" (GET /user)
        return 200, {**self._user_obj(login), "is_admin": False, "bot": False}

    def _get_file(self, params, query, **_):
        p = self._project(params)
        ref = query.get("ref")
        if not ref:
            raise HTTPError(400, {"error": "ref is missing"})
        commit = p.git.branch(ref) or p.git.rev(ref)
        if commit is None:
            raise HTTPError(404, "404 Commit Not Found")
        path = params["path"]
        data = p.git.read(commit, path)
        if data is None:
            raise HTTPError(404, "404 File Not Found")
        return 200, {"file_name": path.rsplit("/", 1)[-1], "file_path": path, "size": len(data), "encoding": "base64",
                     "content": base64.b64encode(data).decode(), "content_sha256": "", "ref": ref,
                     "blob_id": p.git.blob_sha(commit, path), "commit_id": commit, "last_commit_id": commit}

    def _get_branch(self, params, **_):
        p = self._project(params)
        sha = p.git.branch(params["branch"])
        if sha is None:
            raise HTTPError(404, "404 Branch Not Found")
        return 200, {"name": params["branch"], "commit": {"id": sha}, "merged": False, "protected": False,
                     "default": params["branch"] == p.default_branch, "web_url": f"{self.url}/{p.path}/-/tree/{params['branch']}"}

    def _post_commit(self, params, body, login, **_):
        p = self._project(params)
        g = p.git
        for a in body["actions"]:
            if not isinstance(a, dict) or a.get("action") not in _ACTIONS or not isinstance(a.get("file_path"), str):
                self.errors.append(f"POST commits: invalid action {a!r}")
                raise HTTPError(400, {"error": "actions is invalid"})
            extra = set(a) - {"action", "file_path", "previous_path", "content", "encoding", "last_commit_id",
                              "execute_filemode"}
            if extra:
                self.errors.append(f"POST commits: unknown action fields {sorted(extra)}")
                raise HTTPError(400, {"error": f"unknown action fields {sorted(extra)}"})
        branch = body["branch"]
        with g.lock:
            tip = g.branch(branch)
            if body.get("start_branch"):
                if tip is not None:
                    raise HTTPError(400, {"message": f"A branch called '{branch}' already exists. Switch to that branch in order to make changes"})
                tip = g.branch(body["start_branch"])
                if tip is None:
                    raise HTTPError(400, {"message": "You can only create or edit files when you are on a branch"})
            elif tip is None:
                raise HTTPError(400, {"message": "You can only create or edit files when you are on a branch"})
            entries: dict[str, str | None] = {}
            for a in body["actions"]:
                exists = g.blob_sha(tip, a["file_path"]) is not None
                if a["action"] == "update" and not exists:
                    raise HTTPError(400, {"message": "A file with this name doesn't exist"})
                if a.get("last_commit_id") and a["last_commit_id"] != tip and exists:
                    changed = g.log(a["last_commit_id"], tip)
                    if any(g.blob_sha(c, a["file_path"]) != g.blob_sha(a["last_commit_id"], a["file_path"]) for c in changed):
                        raise HTTPError(400, {"message": "You are attempting to update a file that has changed since you started editing it."})
                entries[a["file_path"]] = None if a["action"] == "delete" else g.hash_blob((a.get("content") or "").encode())
            sha = g.commit_tree(g.make_tree(g.tree_of(tip), entries), [tip], body["commit_message"], login)
            if not g.set_ref(branch, sha, g.branch(branch) or ""):
                raise HTTPError(409, {"message": "branch moved"})
        return 201, {"id": sha, "short_id": sha[:8], "title": body["commit_message"].splitlines()[0],
                     "message": body["commit_message"], "author_name": login, "parent_ids": [tip],
                     "created_at": _now(), "web_url": f"{self.url}/{p.path}/-/commit/{sha}"}

    def _list_mrs(self, params, query, **_):
        p = self._project(params)
        out = [m for m in p.mrs.values()
               if (not query.get("source_branch") or m.source_branch == query["source_branch"])
               and (not query.get("target_branch") or m.target_branch == query["target_branch"])
               and (not query.get("state") or query["state"] == "all" or m.state == query["state"])]
        return 200, [self._mr_obj(p, m) for m in out]

    def _create_mr(self, params, body, login, **_):
        p = self._project(params)
        if p.git.branch(body["source_branch"]) is None:
            raise HTTPError(400, {"message": {"source_branch": ["is invalid"]}})
        for m in p.mrs.values():
            if m.state == "opened" and m.source_branch == body["source_branch"] and m.target_branch == body["target_branch"]:
                raise HTTPError(409, {"message": [f"Another open merge request already exists for this source branch: !{m.iid}"]})
        mr = self.open_mr(p.path, body["source_branch"], author=login, title=body["title"],
                          description=body.get("description", ""))
        mr.target_branch = body["target_branch"]
        mr.labels = [x for x in (body.get("labels") or "").split(",") if x]
        return 201, self._mr_obj(p, mr)

    def _mr(self, p: Project, params: dict[str, str]) -> MR:
        mr = p.mrs.get(int(params["iid"]))
        if mr is None:
            raise HTTPError(404, "404 Not found")
        return mr

    def _get_mr(self, params, **_):
        p = self._project(params)
        return 200, self._mr_obj(p, self._mr(p, params))

    def _update_mr(self, params, body, **_):
        p = self._project(params)
        mr = self._mr(p, params)
        if "description" in body:
            mr.description = body["description"]
        if "title" in body:
            mr.title = body["title"]
        if "labels" in body:  # replaces every label (docs "Update MR")
            mr.labels = [x for x in body["labels"].split(",") if x]
        for x in (body.get("add_labels") or "").split(","):  # adds, keeps the others
            if x and x not in mr.labels:
                mr.labels.append(x)
        event = body.get("state_event")
        if event is not None:
            if event not in ("close", "reopen"):
                self.errors.append(f"PUT merge_requests/{mr.iid}: state_event {event!r} is not close or reopen")
                raise HTTPError(400, {"error": "state_event does not have a valid value"})
            # GitLab's state machine: close from opened, reopen from closed; a merged MR stays merged
            if event == "close" and mr.state == "opened":
                mr.state = "closed"
            elif event == "reopen" and mr.state == "closed":
                mr.state = "opened"
        return 200, self._mr_obj(p, mr)

    def _merge_mr(self, params, body, **_):
        """Merge an open MR into its target (fast-forward when possible, else a merge commit)."""
        p = self._project(params)
        mr = self._mr(p, params)
        if mr.state != "opened":
            raise HTTPError(405, {"message": "405 Method Not Allowed"})
        g = p.git
        with g.lock:
            head, base = g.branch(mr.source_branch), g.branch(mr.target_branch)
            if g.is_ancestor(base, head):
                new = head
            else:
                from tests.fakes.github_server import _git

                tree = _git(g.path, "merge-tree", "--write-tree", base, head).split()[0]
                new = g.commit_tree(tree, [base, head], f"Merge branch '{mr.source_branch}' into '{mr.target_branch}'")
            g.set_ref(mr.target_branch, new, base)
        mr.state, mr.merge_commit_sha = "merged", new
        return 200, self._mr_obj(p, mr)

    def _create_pipeline(self, params, body, **_):
        """As GitLab: the ref must exist and hold a .gitlab-ci.yml; variables are {key, value} objects."""
        p = self._project(params)
        sha = p.git.branch(body["ref"])
        if sha is None:
            raise HTTPError(400, {"message": {"base": ["Reference not found"]}})
        if p.git.read(sha, ".gitlab-ci.yml") is None:
            raise HTTPError(400, {"message": {"base": ["Missing CI config file"]}})
        variables = body.get("variables") or []
        for v in variables:
            if not isinstance(v, dict) or not isinstance(v.get("key"), str) or not isinstance(v.get("value"), str):
                self.errors.append(f"POST pipeline: a variable is not {{key, value}} strings: {v!r}")
                raise HTTPError(400, {"error": "variables is invalid"})
        pid = next(self._ids)
        with self._lock:
            self.pipelines[pid] = {"project": p.path, "ref": body["ref"], "sha": sha, "status": "created",
                                   "variables": {v["key"]: v["value"] for v in variables}}
        return 201, self._pipeline_obj(p, pid)

    def _pipeline_obj(self, p: Project, pid: int) -> dict[str, Any]:
        run = self.pipelines[pid]
        return {"id": pid, "iid": pid, "project_id": p.id, "status": run["status"], "source": "api",
                "ref": run["ref"], "sha": run["sha"], "web_url": f"{self.url}/{p.path}/-/pipelines/{pid}",
                "created_at": _now(), "updated_at": _now()}

    def _get_pipeline(self, params, **_):
        p = self._project(params)
        pid = int(params["pipeline_id"])
        if pid not in self.pipelines or self.pipelines[pid]["project"] != p.path:
            raise HTTPError(404, {"message": "404 Not found"})
        return 200, self._pipeline_obj(p, pid)

    def finish_pipeline(self, pid: int, status: str = "success") -> None:
        """Test control: the pipeline ends with ``status`` (success, failed, canceled)."""
        with self._lock:
            self.pipelines[pid]["status"] = status

    def _approvals(self, params, **_):
        p = self._project(params)
        mr = self._mr(p, params)
        ex = copy.deepcopy(_example("merge-request-approvals.json"))
        ex.update(id=mr.id, iid=mr.iid, project_id=p.id, title=mr.title, description=mr.description, state=mr.state,
                  approvals_required=p.approvals_required,
                  approvals_left=max(0, p.approvals_required - len(mr.approved_by)),
                  approved_by=[{"user": self._user_obj(u)} for u in mr.approved_by])
        return 200, ex

    def _list_notes(self, params, query, **_):
        p = self._project(params)
        mr = self._mr(p, params)
        notes = [self._note_obj(n) for n in p.notes.values() if n.mr == mr.iid]
        if query.get("sort", "desc") == "desc":  # GitLab's default: newest first (order_by created_at)
            notes.reverse()
        per = int(query.get("per_page", 20))
        page = int(query.get("page", 1))
        return 200, notes[(page - 1) * per: page * per]

    def _create_note(self, params, body, login, **_):
        p = self._project(params)
        mr = self._mr(p, params)
        n = Note(id=next(self._ids), mr=mr.iid, author=login, body=body["body"], created_at=_now(), updated_at=_now())
        p.notes[n.id] = n
        return 201, self._note_obj(n)

    def _update_note(self, params, body, login, **_):
        p = self._project(params)
        n = p.notes.get(int(params["note"]))
        if n is None:
            raise HTTPError(404, "404 Note Not Found")
        if n.author != login:
            raise HTTPError(403, "403 Forbidden")
        n.body, n.updated_at = body["body"], _now()
        return 200, self._note_obj(n)

    def _post_status(self, params, body, login, **_):
        p = self._project(params)
        if body["state"] not in _STATUS_STATES:
            self.errors.append(f"POST statuses: state {body['state']!r} is not one of {sorted(_STATUS_STATES)}")
            raise HTTPError(400, {"error": "state does not have a valid value"})
        if p.git.rev(params["sha"]) is None:
            raise HTTPError(404, "404 References for commit Not Found")
        st = {"id": next(self._ids), "sha": params["sha"], "ref": None, "status": body["state"],
              "name": body.get("name") or body.get("context") or "default", "target_url": body.get("target_url"),
              "description": body.get("description"), "created_at": _now(), "started_at": None, "finished_at": None,
              "allow_failure": False, "coverage": None, "author": self._user_obj(login)}
        p.statuses.setdefault(params["sha"], []).append(st)
        return 201, st

    def _member(self, params, **_):
        p = self._project(params)
        uid = int(params["user_id"])
        name = next((u for u, i in self.users.items() if i == uid), None)
        if name is None or name not in p.members:
            raise HTTPError(404, "404 Not found")
        ex = copy.deepcopy(_example("project-member.json"))
        ex.update(id=uid, username=name, name=name.title(), access_level=p.members[name], state="active")
        return 200, ex

    def _group_member(self, params, **_):
        members = self.groups.get(unquote(params["id"]), set())
        uid = int(params["user_id"])
        name = next((u for u, i in self.users.items() if i == uid), None)
        if name is None or name not in members:
            raise HTTPError(404, "404 Not found")
        ex = copy.deepcopy(_example("project-member.json"))
        ex.update(id=uid, username=name, access_level=30, state="active")
        return 200, ex

    def public_email(self, username: str) -> str:
        """A user's public e-mail: the one the fake's git uses as author/committer e-mail."""
        return f"{username}@users.noreply.example"

    def _users(self, query, **_):
        name = query.get("username")
        if name is not None:
            return 200, [self._user_obj(name)] if name in self.users else []
        term = (query.get("search") or "").lower()
        if "@" in term:  # an e-mail: exact match on the public e-mail (doc/api/users.md "search")
            hits = [u for u in self.users if self.public_email(u).lower() == term]
        else:
            hits = [u for u in self.users if term and term in u.lower()]
        return 200, self._page([self._user_obj(u) for u in sorted(hits)], query)

    @staticmethod
    def _page(items: list[Any], query: dict[str, str]) -> list[Any]:
        per = int(query.get("per_page", 20))
        page = int(query.get("page", 1))
        return items[(page - 1) * per: page * per]

    def _mr_commits(self, params, query, **_):
        p = self._project(params)
        mr = self._mr(p, params)
        src = self.projects[mr.source_project] if mr.source_project else p
        head = src.git.branch(mr.source_branch)
        base = p.git.branch(mr.target_branch)
        shas = src.git.log(base, head) if head and base and src is p else ([head] if head else [])
        out = []
        for sha in reversed(shas):  # newest first, as GitLab lists them
            c = src.git.commit_info(sha)
            out.append({"id": sha, "short_id": sha[:8], "created_at": c["committer_date"], "parent_ids": c["parents"],
                        "title": c["message"].splitlines()[0] if c["message"] else "", "message": c["message"],
                        "author_name": c["author"], "author_email": c["author_email"], "authored_date": c["author_date"],
                        "committer_name": c["committer"], "committer_email": c["committer_email"],
                        "committed_date": c["committer_date"], "trailers": {}, "extended_trailers": {},
                        "web_url": f"{self.url}/{src.path}/-/commit/{sha}"})
        return 200, self._page(out, query)

    def _list_members(self, params, query, **_):
        p = self._project(params)
        out = []
        for name, level in sorted(p.members.items()):
            ex = copy.deepcopy(_example("project-member.json"))
            ex.pop("email", None)  # shown to administrators only (doc/api/members.md)
            ex.update(id=self.user(name), username=name, name=name.title(), access_level=level, state="active")
            out.append(ex)
        return 200, self._page(out, query)

    def _compare(self, params, query, **_):
        """``from...to`` (merge base, the default) or ``from..to`` (``straight=true``): the commits of ``to``
        since, and per changed file its diff hunks (empty for a binary file, as when diff limits are hit)."""
        from tests.fakes.github_server import _git

        p = self._project(params)
        for name in ("from", "to"):
            if not query.get(name):
                self.errors.append(f"GET repository/compare: missing required query parameter {name!r}")
                raise HTTPError(400, {"error": f"{name} is missing"})
        if query.get("straight", "false") not in ("true", "false"):
            self.errors.append(f"GET repository/compare: straight={query['straight']!r} is not a boolean")
            raise HTTPError(400, {"error": "straight is invalid"})
        g = p.git
        a, b = g.rev(query["from"]), g.rev(query["to"])
        if a is None or b is None:
            raise HTTPError(404, "404 Ref Not Found")
        start = a if query.get("straight") == "true" else _git(g.path, "merge-base", a, b).strip()
        commits = []
        for sha in g.log(start, b):
            c = g.commit_info(sha)
            commits.append({"id": sha, "short_id": sha[:8], "title": c["message"].splitlines()[0] if c["message"] else "",
                            "author_name": c["author"], "author_email": c["author_email"],
                            "created_at": c["committer_date"]})
        diffs = []
        for line in _git(g.path, "diff", "--name-status", "-M", start, b).splitlines():
            kind, *paths = line.split("\t")
            new, old = paths[-1], paths[0]
            text = _git(g.path, "diff", "-M", start, b, "--", *dict.fromkeys([old, new]))
            hunks = text[text.find("@@"):] if "@@" in text and "Binary files" not in text else ""
            diffs.append({"old_path": old, "new_path": new, "a_mode": None if kind[0] == "A" else "100644",
                          "b_mode": "0" if kind[0] == "D" else "100644", "diff": hunks, "new_file": kind[0] == "A",
                          "renamed_file": kind[0] == "R", "deleted_file": kind[0] == "D"})
        return 200, {"commit": commits[-1] if commits else None, "commits": commits, "diffs": diffs,
                     "compare_timeout": False, "compare_same_ref": a == b,
                     "web_url": f"{self.url}/{p.path}/-/compare/{a}...{b}"}

    def _project_events(self, params, query, **_):
        p = self._project(params)
        action = query.get("action")
        evs = [e for e in reversed(p.events) if action in (None, "pushed")]  # newest first
        return 200, self._page(copy.deepcopy(evs), query)


__all__ = ["FakeGitLab", "GitError"]
