"""A fake GitHub REST API on 127.0.0.1, backed by real git repositories, checked against GitHub's OpenAPI.

Every request is matched to an operation of GitHub's OpenAPI description
(npm ``@octokit/openapi``, ``generated/api.github.com.json``, loaded once per process):
method, path, path/query parameters and JSON body are validated against the operation's
schemas; an unknown path or an invalid request is answered 404/422 **and recorded in
``errors``** (tests assert ``errors == []``). Every response body the fake sends is
validated against the documented response schema of that status (a fake that answers
what GitHub never would is a bug too).

Responses start from the official examples in the description (``components/examples``)
with the fields that matter replaced by the fake's state, so they carry every required
field. Repositories are bare git repositories: branches, blobs, trees and commits created
through the API are real git objects (``git diff`` them).

Supported operations (what mlgate's GitHub forge uses, plus app installation tokens):
repos get (``permissions`` of the caller's role); the App's repository installation, ``GET /app`` (JWT);
``GET /user``; contents get/put; branches get; git refs create/update; git trees/commits create;
pulls get/list/create/update (close; a merged PR's state cannot change: 422), reviews list, commits
list; compare two commits (``GET /repos/{o}/{r}/compare/{base}...{head}``: status, ahead/behind, commits,
files with their patches, from real ``git diff``); collaborator permission; team membership; issue
comments list/create/update; issue labels add; commit statuses create;
``POST /app/installations/{id}/access_tokens`` (JWT checked with the app's public key);
``POST /graphql`` against GitHub's GraphQL schema, on the same state (:mod:`tests.fakes.github_graphql`).

Test controls (Python, same process): :meth:`FakeGitHub.add_repo`, :meth:`fork`, :meth:`commit`,
:meth:`open_pr` (``head_repo=`` for a PR from a fork), :meth:`add_review`, :meth:`merge_base_into` (a merge
of the base branch as the PR's new head; GitHub moves the reviews of the old head forward), :meth:`set_permission`,
:meth:`add_team_member`, :meth:`merge_pr`, :meth:`fail_next` (inject 5xx/429/secondary rate limits),
:meth:`add_label`, :meth:`on_request` (run a callback before a request, e.g. to move a branch under the bot),
:meth:`after_request` (run a callback after a request took effect, before its answer: kill the client right
after its create-PR call), :meth:`drop_answer` (do the work, then close the connection without an answer).
"""

from __future__ import annotations

import base64
import copy
import functools
import itertools
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.http import serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "node_modules" / "@octokit" / "openapi" / "generated" / "api.github.com.json"
GENERIC_STATUSES = {401, 403, 404, 429, 500, 502, 503}
#: Path parameters whose values contain slashes (a file path, a git ref such as heads/main).
SLASHED = {"path", "ref", "basehead"}


# --------------------------------------------------------------------------- the OpenAPI description


class OpenAPI:
    """GitHub's REST description: operation lookup and request/response validation."""

    def __init__(self, path: Path = SPEC_PATH):
        self.spec = json.loads(path.read_text())
        self.components = self.spec["components"]
        self._routes: list[tuple[int, re.Pattern[str], str, list[str]]] = []
        for template in self.spec["paths"]:
            names = re.findall(r"\{([^}]+)\}", template)
            literal = len(re.sub(r"\{[^}]+\}", "", template))
            strict = "^" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template)) + "$"
            self._routes.append((literal, re.compile(strict), template, names))
            if names and names[-1] in SLASHED and template.endswith("}"):
                greedy = strict[: -len("([^/]+)$")] + "(.+)$"
                self._routes.append((literal - 1, re.compile(greedy), template, names))
        self._routes.sort(key=lambda r: -r[0])
        self._validators: dict[int, Any] = {}

    def deref(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            cur: Any = self.spec
            for part in node["$ref"][2:].split("/"):
                cur = cur[part.replace("~1", "/").replace("~0", "~")]
            node = cur
        return node

    def match(self, method: str, raw_path: str) -> tuple[str, dict[str, Any], dict[str, str]] | None:
        """(template, operation, path params) for a request path (not decoded), or None."""
        for _, rx, template, names in self._routes:
            m = rx.match(raw_path)
            if not m:
                continue
            op = self.spec["paths"][template].get(method.lower())
            if op is None:
                continue
            return template, op, {n: unquote(v) for n, v in zip(names, m.groups())}
        return None

    def _validator(self, schema: dict[str, Any]):
        key = id(schema)
        v = self._validators.get(key)
        if v is None:
            from openapi_schema_validator import OAS30Validator

            v = OAS30Validator({"allOf": [schema], "components": self.components})
            self._validators[key] = (v, schema)  # keep schema alive so id() stays unique
            return v
        return v[0]

    def errors(self, schema: dict[str, Any], value: Any) -> list[str]:
        out = []
        for e in self._validator(schema).iter_errors(value):
            if e.validator == "oneOf" and "is valid under each of" in e.message:
                # the description's own ambiguity (e.g. 409 = oneOf(basic-error,
                # repository-rule-violation-error), both of which accept GitHub's real body)
                continue
            out.append(f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message[:200]}")
        return out

    def check_request(self, template: str, op: dict[str, Any], params: dict[str, str],
                      query: dict[str, list[str]], body: Any, has_body: bool) -> list[str]:
        problems: list[str] = []
        known_query = set()
        for p in op.get("parameters", []):
            p = self.deref(p)
            where, name, schema = p["in"], p["name"], p.get("schema", {})
            if where == "query":
                known_query.add(name)
                if name not in query:
                    if p.get("required"):
                        problems.append(f"missing required query parameter {name!r}")
                    continue
                value: Any = query[name][-1]
            elif where == "path":
                value = params.get(name)
            else:
                continue
            typ = self.deref(schema).get("type")
            try:
                if typ == "integer":
                    value = int(value)
                elif typ == "number":
                    value = float(value)
                elif typ == "boolean":
                    if value not in ("true", "false"):
                        raise ValueError(value)
                    value = value == "true"
            except (TypeError, ValueError):
                problems.append(f"{where} parameter {name!r}={value!r} is not a {typ}")
                continue
            problems += [f"{where} parameter {name!r}: {e}" for e in self.errors(schema, value)]
        for name in query:
            if name not in known_query:
                problems.append(f"unknown query parameter {name!r} for {template}")
        rb = self.deref(op.get("requestBody")) if op.get("requestBody") else None
        if rb is None:
            if has_body and body not in (None, {}, ""):
                problems.append(f"{template} takes no request body")
        else:
            schema = rb.get("content", {}).get("application/json", {}).get("schema")
            if not has_body:
                if rb.get("required"):
                    problems.append("missing required JSON request body")
            elif schema is not None:
                problems += [f"body {e}" for e in self.errors(schema, body)]
        return problems

    def check_response(self, op: dict[str, Any], status: int, body: Any) -> list[str]:
        responses = op.get("responses", {})
        r = responses.get(str(status))
        if r is None:
            if status in GENERIC_STATUSES:
                return []
            return [f"status {status} is not documented for this operation (documented: {sorted(responses)})"]
        r = self.deref(r)
        content = r.get("content", {}).get("application/json")
        if content is None or "schema" not in content:
            return [] if body in (None, b"", "") else []
        return [f"response {e}" for e in self.errors(content["schema"], body)]

    def example(self, method: str, template: str, status: str, name: str | None = None) -> Any:
        """A deep copy of the documented example for an operation's response."""
        op = self.spec["paths"][template][method]
        content = self.deref(op["responses"][status])["content"]["application/json"]
        examples = content.get("examples") or {}
        key = name or next(iter(examples))
        return copy.deepcopy(self.deref(examples[key])["value"])


@functools.lru_cache(maxsize=1)
def openapi() -> OpenAPI:
    """The description, loaded once per process (13 MB JSON, about 0.2 s)."""
    return OpenAPI()


# --------------------------------------------------------------------------- git plumbing


def _git(repo: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
    e = dict(os.environ, LC_ALL="C", GIT_AUTHOR_NAME="fake", GIT_AUTHOR_EMAIL="fake@example.com",
             GIT_COMMITTER_NAME="fake", GIT_COMMITTER_EMAIL="fake@example.com")
    if env:
        e.update(env)
    out = subprocess.run(["git", f"--git-dir={repo}", *args], input=input, capture_output=True, env=e)
    if out.returncode != 0:
        raise GitError(out.stderr.decode(errors="replace").strip())
    return out.stdout.decode()


class GitError(Exception):
    pass


class Git:
    """Plumbing over one bare repository."""

    def __init__(self, path: Path, default_branch: str = "main"):
        self.path = path
        subprocess.run(["git", "init", "--quiet", "--bare", "-b", default_branch, str(path)], check=True)
        self.lock = threading.RLock()

    def rev(self, ref: str) -> str | None:
        try:
            return _git(self.path, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip() or None
        except GitError:
            return None

    def branch(self, name: str) -> str | None:
        return self.rev(f"refs/heads/{name}")

    def branches(self) -> list[str]:
        out = _git(self.path, "for-each-ref", "--format=%(refname:short)", "refs/heads")
        return [b for b in out.splitlines() if b]

    def tree_of(self, commit: str) -> str:
        return _git(self.path, "rev-parse", f"{commit}^{{tree}}").strip()

    def blob_sha(self, commit: str, path: str) -> str | None:
        try:
            out = _git(self.path, "ls-tree", commit, "--", path).strip()
        except GitError:
            return None
        if not out:
            return None
        mode, typ, sha = out.split("\t")[0].split()
        return sha if typ == "blob" else None

    def read(self, commit: str, path: str) -> bytes | None:
        sha = self.blob_sha(commit, path)
        if sha is None:
            return None
        return subprocess.run(["git", f"--git-dir={self.path}", "cat-file", "blob", sha], capture_output=True,
                              check=True).stdout

    def hash_blob(self, data: bytes) -> str:
        return _git(self.path, "hash-object", "-w", "--stdin", input=data).strip()

    def make_tree(self, base_tree: str | None, entries: dict[str, str | None]) -> str:
        """A tree: ``base_tree`` with ``path -> blob sha`` set (None deletes)."""
        with tempfile.NamedTemporaryFile(prefix="idx-", dir=self.path) as idx:
            env = {"GIT_INDEX_FILE": idx.name}
            os.unlink(idx.name)
            if base_tree:
                _git(self.path, "read-tree", base_tree, env=env)
            else:
                _git(self.path, "read-tree", "--empty", env=env)
            for p, sha in entries.items():
                if sha is None:  # ``--force-remove`` needs a work tree; mode 0 removes the entry
                    _git(self.path, "update-index", "--index-info", input=f"0 {'0' * 40}\t{p}\n".encode(), env=env)
                else:
                    _git(self.path, "update-index", "--add", "--cacheinfo", f"100644,{sha},{p}", env=env)
            tree = _git(self.path, "write-tree", env=env).strip()
            open(idx.name, "a").close()  # let NamedTemporaryFile delete it
            return tree

    def commit_tree(self, tree: str, parents: list[str], message: str, author: str = "fake",
                    when: datetime | None = None) -> str:
        args = ["commit-tree", tree]
        for p in parents:
            args += ["-p", p]
        env = {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": f"{author}@users.noreply.example",
               "GIT_COMMITTER_NAME": author, "GIT_COMMITTER_EMAIL": f"{author}@users.noreply.example"}
        if when:
            stamp = f"{int(when.timestamp())} +0000"
            env.update(GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
        return _git(self.path, *args, input=message.encode(), env=env).strip()

    def set_ref(self, name: str, new: str, old: str | None = None) -> bool:
        """Compare-and-swap ``refs/heads/<name>``; ``old`` "" means "must not exist"."""
        args = ["update-ref", f"refs/heads/{name}", new]
        if old is not None:
            args.append(old or "0" * 40)
        try:
            _git(self.path, *args)
            return True
        except GitError:
            return False

    def is_ancestor(self, a: str, b: str) -> bool:
        r = subprocess.run(["git", f"--git-dir={self.path}", "merge-base", "--is-ancestor", a, b])
        return r.returncode == 0

    def commit_info(self, sha: str) -> dict[str, Any]:
        fmt = "%H%x00%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B"
        parts = _git(self.path, "show", "-s", f"--format={fmt}", sha).split("\x00")
        return {"sha": parts[0], "tree": parts[1], "parents": parts[2].split(), "author": parts[3],
                "author_email": parts[4], "author_date": parts[5], "committer": parts[6],
                "committer_email": parts[7], "committer_date": parts[8], "message": parts[9].rstrip("\n")}

    def log(self, base: str, head: str) -> list[str]:
        out = _git(self.path, "rev-list", "--reverse", f"{base}..{head}")
        return out.split()

    def diff(self, a: str, b: str) -> str:
        return _git(self.path, "diff", a, b)


# --------------------------------------------------------------------------- state


@dataclass
class PR:
    number: int
    title: str
    body: str
    head: str
    base: str
    user: str
    state: str = "open"
    merged: bool = False
    merge_commit: str | None = None
    merged_head: str | None = None
    labels: list[str] = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""
    id: int = 0
    head_repo: str | None = None  # full name of the fork holding ``head`` (None: the base repository)


@dataclass
class Review:
    id: int
    user: str
    state: str
    commit_id: str
    body: str
    submitted_at: str


@dataclass
class Comment:
    id: int
    issue: int
    user: str
    body: str
    created_at: str
    updated_at: str


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    git: Git
    default_branch: str = "main"
    permissions: dict[str, str] = field(default_factory=dict)
    pulls: dict[int, PR] = field(default_factory=dict)
    reviews: dict[int, list[Review]] = field(default_factory=dict)
    comments: dict[int, Comment] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    next_number: int = 1
    fork_of: str | None = None
    #: the repository's labels (REST "Add labels to an issue" creates missing ones; GraphQL reads them)
    labels: set[str] = field(default_factory=set)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class _Answered(Exception):
    """The answer is already decided (a refused GraphQL document)."""


class HTTPError(Exception):
    def __init__(self, status: int, message: str, errors: list[Any] | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- the server


class FakeGitHub:
    """The fake. Start with :meth:`start` (or as a context manager); ``url`` is the API root.

    Args:
        workdir: where the bare repositories live.
        tokens: token → login accepted as ``Authorization: token ...``.
        app: (app_id, PEM public key) to accept GitHub App JWTs for installation tokens.
        token_ttl: seconds an installation token lives (GitHub: 3600).
    """

    def __init__(self, workdir: Path, *, tokens: dict[str, str] | None = None,
                 app: tuple[int, str] | None = None, app_slug: str = "mlgate-app", token_ttl: float = 3600.0):
        self.workdir = Path(workdir)
        self.api = openapi()
        self.repos: dict[str, Repo] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.teams: dict[tuple[str, str], set[str]] = {}
        self.tokens: dict[str, tuple[str, float | None]] = {t: (u, None) for t, u in (tokens or {}).items()}
        self.app = app
        self.app_slug = app_slug
        self.token_ttl = token_ttl
        self.minted: list[str] = []
        #: the App installation's permissions (``GET /repos/{o}/{r}/installation``); tests narrow them
        self.app_permissions: dict[str, str] = {"contents": "write", "pull_requests": "write", "metadata": "read",
                                                "statuses": "write", "issues": "write"}
        self.errors: list[str] = []
        self.requests: list[tuple[str, str, int]] = []
        self._faults: list[dict[str, Any]] = []
        self._hooks: list[tuple[str, re.Pattern[str], Callable[[], None]]] = []
        #: after-the-work hooks, run once: (method, path regex, callback; None drops the answer)
        self._after: list[tuple[str, re.Pattern[str], Callable[[], None] | None]] = []
        self._ids = itertools.count(1000)
        #: workflow_dispatch runs by id: repo, workflow, ref, sha, inputs, status, conclusion
        self.workflow_runs: dict[int, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""
        self._graphql: Any = None  # the GraphQL endpoint, built on the first POST /graphql

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "FakeGitHub":
        from tests.fakes.github_graphql import schema

        # GitHub's GraphQL schema takes a second or more to build (once per process): build it now,
        # beside the test, so that no timed request pays for it
        threading.Thread(target=schema, daemon=True).start()
        self._server, self.url = serve_in_thread(self._serve)
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "FakeGitHub":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---------------------------------------------------------------- test controls

    def user(self, login: str, type_: str = "User") -> dict[str, Any]:
        with self._lock:
            if login not in self.users:
                uid = next(self._ids)
                self.users[login] = {"login": login, "id": uid, "type": type_}
            return self.users[login]

    def add_repo(self, full_name: str, files: dict[str, str], *, default_branch: str = "main",
                 author: str = "octo") -> Repo:
        owner, name = full_name.split("/")
        self.user(owner)
        path = self.workdir / f"{owner}__{name}.git"
        g = Git(path, default_branch)
        repo = Repo(owner=owner, name=name, id=next(self._ids), git=g, default_branch=default_branch)
        self.repos[full_name] = repo
        blobs = {p: g.hash_blob(t.encode()) for p, t in files.items()}
        tree = g.make_tree(None, blobs)
        sha = g.commit_tree(tree, [], "initial commit", author)
        g.set_ref(default_branch, sha)
        repo.permissions[owner] = "admin"
        return repo

    def commit(self, full_name: str, branch: str, files: dict[str, str | None], *, author: str = "octo",
               message: str = "change", base: str | None = None) -> str:
        """Commit ``files`` on ``branch`` (created from ``base`` or the default branch); returns the sha."""
        repo = self.repos[full_name]
        g = repo.git
        with g.lock:
            parent = g.branch(branch) or g.branch(base or repo.default_branch)
            tree = g.make_tree(g.tree_of(parent) if parent else None,
                               {p: (g.hash_blob(t.encode()) if t is not None else None) for p, t in files.items()})
            sha = g.commit_tree(tree, [parent] if parent else [], message, author)
            g.set_ref(branch, sha)
        self.user(author)
        return sha

    def fork(self, full_name: str, owner: str) -> Repo:
        """A fork of ``full_name`` owned by ``owner`` (``owner/<name>``), with the same history."""
        src = self.repos[full_name]
        self.user(owner)
        name = f"{owner}/{src.name}"
        path = self.workdir / f"{owner}__{src.name}.git"
        g = Git(path, src.default_branch)
        _git(g.path, "fetch", "--quiet", str(src.git.path), "+refs/heads/*:refs/heads/*")
        repo = Repo(owner=owner, name=src.name, id=next(self._ids), git=g, default_branch=src.default_branch,
                    fork_of=full_name)
        repo.permissions[owner] = "admin"
        self.repos[name] = repo
        return repo

    def open_pr(self, full_name: str, head: str, *, base: str | None = None, user: str = "octo",
                title: str = "Change", body: str = "", head_repo: str | None = None) -> PR:
        """Open a PR from branch ``head`` (of the fork ``head_repo`` when given) into ``base``."""
        repo = self.repos[full_name]
        self.user(user)
        with self._lock:
            number = repo.next_number
            repo.next_number += 1
            pr = PR(number=number, title=title, body=body, head=head, base=base or repo.default_branch, user=user,
                    created_at=_now(), updated_at=_now(), id=next(self._ids),
                    head_repo=head_repo if head_repo and head_repo != full_name else None)
            repo.pulls[number] = pr
        return pr

    def head_sha(self, full_name: str, number: int) -> str | None:
        """The head commit of a PR, made available in the base repository as ``refs/pull/<n>/head``
        (as GitHub does), so that it can be compared with and merged into the base branch."""
        repo = self.repos[full_name]
        pr = repo.pulls[number]
        if pr.head_repo is None:
            return repo.git.branch(pr.head)
        fork = self.repos[pr.head_repo]
        sha = fork.git.branch(pr.head)
        if sha is not None and repo.git.rev(sha) is None:
            _git(repo.git.path, "fetch", "--quiet", str(fork.git.path), f"+refs/heads/{pr.head}:refs/pull/{number}/head")
        return sha

    def add_review(self, full_name: str, number: int, user: str, state: str, *, commit_id: str | None = None,
                   body: str = "", at: str | None = None) -> Review:
        repo = self.repos[full_name]
        self.user(user)
        pr = repo.pulls[number]
        r = Review(id=next(self._ids), user=user, state=state, commit_id=commit_id or repo.git.branch(pr.head) or "",
                   body=body, submitted_at=at or _now())
        with self._lock:
            repo.reviews.setdefault(number, []).append(r)
        return r

    def merge_base_into(self, full_name: str, number: int, *, author: str = "octo",
                        extra_files: dict[str, str | None] | None = None) -> str:
        """Merge the base branch into PR ``number``'s head branch (as "Update branch" or a local
        ``git merge main`` and push do); returns the new head. ``extra_files`` are changed in the
        merge commit itself (an "evil merge": the merge brings more than the base's changes).

        As GitHub does, every review whose ``commit_id`` was the old head now names the new head
        (issue 10: GitHub re-points reviews across a merge of the base branch)."""
        repo = self.repos[full_name]
        pr = repo.pulls[number]
        g = repo.git
        with g.lock:
            old, base = self.head_sha(full_name, number), g.branch(pr.base)
            assert old and base and pr.head_repo is None, "merge_base_into: a PR from a branch of this repository"
            tree = _git(g.path, "merge-tree", "--write-tree", old, base).split()[0]
            if extra_files:
                tree = g.make_tree(tree, {p: (g.hash_blob(t.encode()) if t is not None else None)
                                          for p, t in extra_files.items()})
            new = g.commit_tree(tree, [old, base], f"Merge branch '{pr.base}' into {pr.head}", author)
            g.set_ref(pr.head, new, old)
        self.user(author)
        with self._lock:
            for r in repo.reviews.get(number, []):
                if r.commit_id == old:
                    r.commit_id = new
        return new

    def dismiss_review(self, full_name: str, number: int, review_id: int) -> None:
        for r in self.repos[full_name].reviews.get(number, []):
            if r.id == review_id:
                r.state = "DISMISSED"

    def set_permission(self, full_name: str, login: str, role: str) -> None:
        self.user(login)
        self.repos[full_name].permissions[login] = role

    def add_team_member(self, org: str, slug: str, login: str) -> None:
        self.user(login)
        self.teams.setdefault((org, slug), set()).add(login)

    def merge_pr(self, full_name: str, number: int) -> str:
        """Merge a PR (fast-forward when possible, else a merge commit); returns the new base tip."""
        repo = self.repos[full_name]
        pr = repo.pulls[number]
        g = repo.git
        with g.lock:
            head, base = self.head_sha(full_name, number), g.branch(pr.base)
            assert head and base
            if g.is_ancestor(base, head):
                new = head
            else:
                tree = _git(g.path, "merge-tree", "--write-tree", base, head).split()[0]
                new = g.commit_tree(tree, [base, head], f"Merge pull request #{number} from {pr.head}")
            g.set_ref(pr.base, new, base)
        pr.state, pr.merged, pr.merge_commit, pr.merged_head = "closed", True, new, head
        return new

    def fail_next(self, method: str, path_regex: str, status: int, *, count: int = 1,
                  headers: dict[str, str] | None = None, message: str = "Server Error") -> None:
        """Answer the next ``count`` matching requests with ``status`` (after validating them).

        ``message`` may hold ``{authorization}`` (the request's Authorization header value, e.g.
        ``token ghp_...``) and ``{credentials}`` (the token alone): the answer echoes them, as some
        proxies and GitHub Enterprise error pages echo the request (issue 10)."""
        self._faults.append({"method": method.upper(), "rx": re.compile(path_regex), "status": status,
                             "count": count, "headers": headers or {}, "message": message})

    def on_request(self, method: str, path_regex: str, callback: Callable[[], None]) -> None:
        """Run ``callback`` once before the next matching request is served."""
        self._hooks.append((method.upper(), re.compile(path_regex), callback))

    def after_request(self, method: str, path_regex: str, callback: Callable[[], None]) -> None:
        """Run ``callback`` once after the next matching request took effect, before its answer is
        sent (e.g. SIGKILL the bot right after its create-PR call went through)."""
        self._after.append((method.upper(), re.compile(path_regex), callback))

    def drop_answer(self, method: str, path_regex: str) -> None:
        """Serve the next matching request (its effect happens), then close the connection
        without an answer, as a proxy timing out after GitHub did the work."""
        self._after.append((method.upper(), re.compile(path_regex), None))

    def _after_hook(self, method: str, raw_path: str) -> tuple[bool, Callable[[], None] | None]:
        """(whether an after-hook matched, its callback) for a request that succeeded; removed."""
        with self._lock:
            hit = next((a for a in self._after if a[0] == method and a[1].search(raw_path)), None)
            if hit is not None:
                self._after.remove(hit)
        return (hit is not None, hit[2] if hit else None)

    def add_label(self, full_name: str, name: str) -> None:
        """Create label ``name`` in the repository (as "Create a label" does)."""
        self.repos[full_name].labels.add(name)

    def graphql_calls(self, field_regex: str = "") -> list[tuple[str, str, int]]:
        """``POST /graphql`` requests, recorded as ``/graphql#field,field@owner/name`` (root fields, repository)."""
        return self.calls("POST", rf"^/graphql#.*{field_regex}")

    def calls(self, method: str | None = None, path_regex: str = "") -> list[tuple[str, str, int]]:
        rx = re.compile(path_regex)
        return [r for r in self.requests if (method is None or r[0] == method.upper()) and rx.search(r[1])]

    def pulls(self, full_name: str, state: str | None = None) -> list[PR]:
        return [p for p in self.repos[full_name].pulls.values() if state is None or p.state == state]

    def comments(self, full_name: str, number: int) -> list[Comment]:
        return [c for c in self.repos[full_name].comments.values() if c.issue == number]

    def statuses(self, full_name: str, sha: str) -> list[dict[str, Any]]:
        return self.repos[full_name].statuses.get(sha, [])

    # ---------------------------------------------------------------- HTTP plumbing

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        method = h.command
        split = urlsplit(h.path)
        raw_path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        status, body, headers = 500, {"message": "fake error"}, {}
        op = None
        try:
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                raise HTTPError(400, "Problems parsing JSON")
            if method == "POST" and raw_path == "/graphql":
                return self._serve_graphql(h, data)
            for hm, rx, cb in list(self._hooks):
                if hm == method and rx.search(raw_path):
                    self._hooks.remove((hm, rx, cb))
                    cb()
            found = self.api.match(method, raw_path)
            if found is None:
                self.errors.append(f"{method} {raw_path}: no such operation in GitHub's OpenAPI description")
                raise HTTPError(404, "Not Found")
            template, op, params = found
            problems = self.api.check_request(template, op, params, query, data, bool(raw))
            if problems:
                self.errors.append(f"{method} {raw_path}: invalid request: {'; '.join(problems)}")
                raise HTTPError(422, "Validation Failed",
                                [{"resource": "Request", "code": "invalid", "message": p} for p in problems])
            login = self._auth(h, template)
            for f in self._faults:
                if f["method"] == method and f["rx"].search(raw_path) and f["count"] > 0:
                    f["count"] -= 1
                    auth = h.headers.get("Authorization") or ""
                    echoed = f["message"].replace("{authorization}", auth).replace("{credentials}", auth.partition(" ")[2])
                    raise HTTPError(f["status"], echoed, headers=f["headers"])
            handler = getattr(self, "_op_" + _op_name(method, template), None)
            if handler is None:
                self.errors.append(f"{method} {template}: valid GitHub operation the fake does not implement")
                raise HTTPError(501, "not implemented by the fake")
            status, body, *extra = handler(params=params, query=query, body=data, login=login)
            headers = extra[0] if extra else {}
            matched, after = self._after_hook(method, raw_path)
            if matched and after is not None:
                after()
            elif matched:  # drop the answer: the work is done, the client never hears of it
                self.requests.append((method, raw_path, 0))
                h.close_connection = True
                return
            if op is not None and status < 300:
                problems = self.api.check_response(op, status, body)
                if problems:
                    self.errors.append(f"{method} {raw_path}: the fake's response is invalid: {'; '.join(problems[:5])}")
        except HTTPError as e:
            status, headers = e.status, e.headers
            body = {"message": e.message, "documentation_url": "https://docs.github.com/rest"}
            if e.errors is not None:
                body["errors"] = e.errors
            if op is not None and e.status not in GENERIC_STATUSES:
                problems = self.api.check_response(op, e.status, body)
                if problems:
                    self.errors.append(f"{method} {raw_path}: the fake's {e.status} answer is invalid: {problems[:3]}")
        except Exception as e:  # a bug in the fake: make it visible
            self.errors.append(f"{method} {raw_path}: fake crashed: {type(e).__name__}: {e}")
            status, body = 500, {"message": f"fake crashed: {e}"}
        self.requests.append((method, raw_path, status))
        self._send(h, status, body, headers)

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str]) -> None:
        out = b"" if body is None else json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(out)))
        h.send_header("X-RateLimit-Limit", "5000")
        h.send_header("X-RateLimit-Remaining", "4999")
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(out)

    def _serve_graphql(self, h: BaseHTTPRequestHandler, data: Any) -> None:
        """``POST /graphql`` (:mod:`tests.fakes.github_graphql`): validated against GitHub's schema,
        run on the same state. Hooks, faults and ``requests`` see the path ``/graphql#f1,f2`` (the
        document's root fields) and ``@owner/name`` (the repository its variables name), e.g.
        ``after_request("POST", r"^/graphql#.*createPullRequest.*@acme/deploy$", ...)``."""
        from tests.fakes.github_graphql import GraphQLEndpoint

        with self._lock:
            if self._graphql is None:
                self._graphql = GraphQLEndpoint(self)
        doc, fields, refused = self._graphql.parse(data)
        repo = self._graphql.repository_of(data)
        key = f"/graphql#{','.join(fields)}" + (f"@{repo}" if repo else "")
        status, body, headers = 200, refused, {}
        try:
            login = self._auth(h, "/graphql")
            if refused is not None:
                status = 200 if "errors" in refused else 400
                raise _Answered()
            for hm, rx, cb in list(self._hooks):
                if hm == "POST" and rx.search(key):
                    self._hooks.remove((hm, rx, cb))
                    cb()
            for f in self._faults:
                if f["method"] == "POST" and f["rx"].search(key) and f["count"] > 0:
                    f["count"] -= 1
                    auth = h.headers.get("Authorization") or ""
                    echoed = f["message"].replace("{authorization}", auth).replace("{credentials}", auth.partition(" ")[2])
                    raise HTTPError(f["status"], echoed, headers=f["headers"])
            body = self._graphql.execute(doc, data, login)
            matched, after = self._after_hook("POST", key)
            if matched and after is not None:
                after()
            elif matched:  # drop the answer: the work is done, the client never hears of it
                self.requests.append(("POST", key, 0))
                h.close_connection = True
                return
        except _Answered:
            pass
        except HTTPError as e:
            status, headers = e.status, e.headers
            body = {"message": e.message, "documentation_url": "https://docs.github.com/graphql"}
        except Exception as e:  # a bug in the fake: make it visible
            self.errors.append(f"POST {key}: fake crashed: {type(e).__name__}: {e}")
            status, body = 500, {"message": f"fake crashed: {e}"}
        self.requests.append(("POST", key, status))
        try:
            self._send(h, status, body, headers)
        except (BrokenPipeError, ConnectionResetError):  # the client is gone (a test killed it after the work)
            h.close_connection = True

    def _auth(self, h: BaseHTTPRequestHandler, template: str) -> str:
        auth = h.headers.get("Authorization") or ""
        scheme, _, cred = auth.partition(" ")
        if template in ("/app/installations/{installation_id}/access_tokens", "/repos/{owner}/{repo}/installation",
                        "/app"):
            if scheme.lower() != "bearer" or not self.app:
                raise HTTPError(401, "A JSON web token could not be decoded")
            import jwt

            try:
                claims = jwt.decode(cred, self.app[1], algorithms=["RS256"])
            except jwt.PyJWTError as e:
                raise HTTPError(401, f"'Expiration time' claim ('exp') is invalid or JWT is invalid: {e}") from None
            if str(claims.get("iss")) != str(self.app[0]):
                raise HTTPError(401, "Integration not found")
            return f"{self.app_slug}[bot]"
        entry = self.tokens.get(cred)
        if scheme.lower() not in ("token", "bearer") or entry is None:
            raise HTTPError(401, "Bad credentials")
        login, expires = entry
        if expires is not None and time.time() >= expires:
            raise HTTPError(401, "Bad credentials")
        return login

    # ---------------------------------------------------------------- object builders

    def _user_obj(self, login: str) -> dict[str, Any]:
        u = self.user(login, "Bot" if login.endswith("[bot]") else "User")
        ex = self.api.example("get", "/repos/{owner}/{repo}/issues/comments/{comment_id}", "200")["user"]
        ex.update(login=login, id=u["id"], type=u["type"], node_id=f"U_{u['id']}",
                  url=f"{self.url}/users/{login}", html_url=f"https://github.example/{login}")
        return ex

    def _repo(self, params: dict[str, str]) -> Repo:
        repo = self.repos.get(f"{params['owner']}/{params['repo']}")
        if repo is None:
            raise HTTPError(404, "Not Found")
        return repo

    def _repo_obj(self, repo: Repo) -> dict[str, Any]:
        ex = self.api.example("get", "/repos/{owner}/{repo}", "200")
        ex.pop("source", None)
        ex.pop("parent", None)
        ex.pop("template_repository", None)
        host = urlsplit(self.url).netloc
        ex.update(id=repo.id, name=repo.name, full_name=repo.full_name, default_branch=repo.default_branch,
                  owner=self._user_obj(repo.owner), url=f"{self.url}/repos/{repo.full_name}",
                  html_url=f"https://github.example/{repo.full_name}", language=None, private=True,
                  # the repository's own clone addresses, on the fake's host (GHES-like: API at the root)
                  clone_url=f"{self.url}/{repo.full_name}.git", git_url=f"git://{host}/{repo.full_name}.git",
                  ssh_url=f"git@{host.split(':')[0]}:{repo.full_name}.git", svn_url=f"{self.url}/{repo.full_name}",
                  fork=repo.fork_of is not None)
        return ex

    def _simple_repo(self, repo: Repo) -> dict[str, Any]:
        ex = self._repo_obj(repo)
        return ex

    def _commit_obj(self, repo: Repo, sha: str) -> dict[str, Any]:
        info = repo.git.commit_info(sha)
        ex = self.api.example("get", "/repos/{owner}/{repo}/pulls/{pull_number}/commits", "200")[0]
        ex.update(sha=sha, node_id=f"C_{sha[:10]}", url=f"{self.url}/repos/{repo.full_name}/commits/{sha}",
                  html_url=f"https://github.example/{repo.full_name}/commit/{sha}")
        ex["commit"].update(message=info["message"], url=f"{self.url}/repos/{repo.full_name}/git/commits/{sha}")
        ex["commit"]["tree"] = {"sha": info["tree"], "url": f"{self.url}/repos/{repo.full_name}/git/trees/{info['tree']}"}
        ex["commit"]["author"] = {"name": info["author"], "email": info["author_email"], "date": info["author_date"]}
        ex["commit"]["committer"] = {"name": info["committer"], "email": info["committer_email"], "date": info["committer_date"]}
        # an author GitHub cannot link to an account is an empty object (the validator does not
        # apply ``nullable`` to a ``oneOf``, so null would be flagged although GitHub sends it)
        ex["author"] = self._user_obj(info["author"]) if info["author"] in self.users else {}
        ex["committer"] = self._user_obj(info["committer"]) if info["committer"] in self.users else {}
        ex["parents"] = [{"sha": p, "url": f"{self.url}/repos/{repo.full_name}/commits/{p}"} for p in info["parents"]]
        return ex

    def _pr_obj(self, repo: Repo, pr: PR, simple: bool = False) -> dict[str, Any]:
        if simple:
            ex = self.api.example("get", "/repos/{owner}/{repo}/pulls", "200")[0]
        else:
            ex = self.api.example("get", "/repos/{owner}/{repo}/pulls/{pull_number}", "200")
        g = repo.git
        head_sha = pr.merged_head if pr.merged else (self.head_sha(repo.full_name, pr.number) or "0" * 40)
        base_sha = g.branch(pr.base) or "0" * 40
        url = f"{self.url}/repos/{repo.full_name}/pulls/{pr.number}"
        html = f"https://github.example/{repo.full_name}/pull/{pr.number}"
        ex.update(
            id=pr.id, node_id=f"PR_{pr.id}", number=pr.number, title=pr.title, body=pr.body, state=pr.state,
            user=self._user_obj(pr.user), url=url, html_url=html, created_at=pr.created_at, updated_at=pr.updated_at,
            labels=[self._label(repo, n) for n in pr.labels], requested_teams=[], requested_reviewers=[],
            assignee=None, assignees=[], milestone=None, draft=False, locked=False, auto_merge=None,
            merged_at=pr.updated_at if pr.merged else None, closed_at=pr.updated_at if pr.state == "closed" else None,
            merge_commit_sha=pr.merge_commit,
        )
        head_repo = self.repos[pr.head_repo] if pr.head_repo else repo
        for side, branch, sha, r in (("head", pr.head, head_sha, head_repo), ("base", pr.base, base_sha, repo)):
            ex[side].update(ref=branch, sha=sha, label=f"{r.owner}:{branch}", user=self._user_obj(r.owner),
                            repo=self._simple_repo(r))
        if not simple:
            commits = g.log(base_sha, head_sha) if head_sha != "0" * 40 and not pr.merged else []
            ex.update(merged=pr.merged, mergeable=True, rebaseable=True, mergeable_state="clean",
                      merged_by=self._user_obj(repo.owner) if pr.merged else None, comments=len(
                          [c for c in repo.comments.values() if c.issue == pr.number]),
                      review_comments=0, maintainer_can_modify=False, commits=len(commits), additions=1, deletions=1,
                      changed_files=1)
        return ex

    def _label(self, repo: Repo, name: str) -> dict[str, Any]:
        ex = self.api.example("post", "/repos/{owner}/{repo}/issues/{issue_number}/labels", "200")[0]
        ex.update(name=name, url=f"{self.url}/repos/{repo.full_name}/labels/{name}",
                  id=abs(hash((repo.full_name, name))) % 10**9, node_id=f"L_{name}", description="", default=False)
        return ex

    def _comment_obj(self, repo: Repo, c: Comment) -> dict[str, Any]:
        ex = self.api.example("get", "/repos/{owner}/{repo}/issues/comments/{comment_id}", "200")
        ex.update(id=c.id, node_id=f"IC_{c.id}", body=c.body, user=self._user_obj(c.user), created_at=c.created_at,
                  updated_at=c.updated_at, url=f"{self.url}/repos/{repo.full_name}/issues/comments/{c.id}",
                  html_url=f"https://github.example/{repo.full_name}/pull/{c.issue}#issuecomment-{c.id}",
                  issue_url=f"{self.url}/repos/{repo.full_name}/issues/{c.issue}")
        ex.pop("performed_via_github_app", None)
        ex.pop("reactions", None)
        return ex

    def _content_obj(self, repo: Repo, path: str, data: bytes, sha: str) -> dict[str, Any]:
        ex = self.api.example("get", "/repos/{owner}/{repo}/contents/{path}", "200", "response-if-content-is-a-file")
        url = f"{self.url}/repos/{repo.full_name}/contents/{path}"
        ex.update(type="file", encoding="base64", size=len(data), name=path.rsplit("/", 1)[-1], path=path,
                  content=base64.encodebytes(data).decode(), sha=sha, url=url,
                  git_url=f"{self.url}/repos/{repo.full_name}/git/blobs/{sha}",
                  html_url=f"https://github.example/{repo.full_name}/blob/main/{path}",
                  download_url=f"https://raw.github.example/{repo.full_name}/main/{path}")
        ex["_links"] = {"self": url, "git": ex["git_url"], "html": ex["html_url"]}
        return ex

    def _git_commit_obj(self, repo: Repo, sha: str) -> dict[str, Any]:
        info = repo.git.commit_info(sha)
        ex = self.api.example("post", "/repos/{owner}/{repo}/git/commits", "201")
        ex.update(sha=sha, node_id=f"C_{sha[:10]}", url=f"{self.url}/repos/{repo.full_name}/git/commits/{sha}",
                  html_url=f"https://github.example/{repo.full_name}/commit/{sha}", message=info["message"])
        ex["tree"] = {"sha": info["tree"], "url": f"{self.url}/repos/{repo.full_name}/git/trees/{info['tree']}"}
        ex["author"] = {"name": info["author"], "email": info["author_email"], "date": info["author_date"]}
        ex["committer"] = {"name": info["committer"], "email": info["committer_email"], "date": info["committer_date"]}
        ex["parents"] = [{"sha": p, "url": f"{self.url}/repos/{repo.full_name}/git/commits/{p}",
                          "html_url": f"https://github.example/{repo.full_name}/commit/{p}"} for p in info["parents"]]
        return ex

    def _ref_obj(self, repo: Repo, branch: str, sha: str) -> dict[str, Any]:
        ex = self.api.example("post", "/repos/{owner}/{repo}/git/refs", "201")
        ex.update(ref=f"refs/heads/{branch}", node_id=f"REF_{branch}",
                  url=f"{self.url}/repos/{repo.full_name}/git/refs/heads/{branch}")
        ex["object"] = {"type": "commit", "sha": sha, "url": f"{self.url}/repos/{repo.full_name}/git/commits/{sha}"}
        return ex

    # ---------------------------------------------------------------- operations

    def _op_get_repo(self, params, login, **_):
        # ``permissions`` (full-repository) is the caller's role, as GitHub sends it to an authenticated caller
        repo = self._repo(params)
        ex = self._repo_obj(repo)
        role = repo.permissions.get(login, "none")
        rank = ["none", "read", "triage", "write", "maintain", "admin"].index(role if role in (
            "read", "triage", "write", "maintain", "admin") else "none")
        ex["permissions"] = {"admin": rank >= 5, "maintain": rank >= 4, "push": rank >= 3, "triage": rank >= 2,
                             "pull": rank >= 1}
        return 200, ex

    def _op_get_user(self, login, **_):
        # REST "Get the authenticated user": the token's account
        ex = self.api.example("get", "/user", "200", "response-with-public-profile-information")
        u = self._user_obj(login)
        ex.update(login=login, id=u["id"], node_id=u["node_id"], type=u["type"], url=u["url"], html_url=u["html_url"],
                  user_view_type="public")  # the schema's discriminator (public-user / private-user)
        return 200, ex

    def _op_get_app(self, **_):
        # REST "Get the authenticated app" (JWT)
        ex = self.api.example("get", "/app", "200")
        ex.update(id=int(self.app[0]) if self.app else 1, slug=self.app_slug, name=self.app_slug)
        return 200, ex

    def _op_get_repo_installation(self, params, **_):
        # REST "Get a repository installation for the authenticated app" (JWT): the installation's permissions
        repo = self._repo(params)
        ex = self.api.example("get", "/repos/{owner}/{repo}/installation", "200")
        ex.update(id=1, app_slug=self.app_slug, permissions=dict(self.app_permissions),
                  account=self._user_obj(repo.owner))
        return 200, ex

    def _op_get_contents(self, params, query, **_):
        repo = self._repo(params)
        ref = (query.get("ref") or [repo.default_branch])[-1]
        commit = repo.git.rev(ref) or repo.git.branch(ref)
        if commit is None:
            raise HTTPError(404, f"No commit found for the ref {ref}")
        path = params["path"]
        data = repo.git.read(commit, path)
        if data is None:
            raise HTTPError(404, "Not Found")
        return 200, self._content_obj(repo, path, data, repo.git.blob_sha(commit, path) or "")

    def _op_put_contents(self, params, body, login, **_):
        repo = self._repo(params)
        g = repo.git
        branch = body.get("branch") or repo.default_branch
        path = params["path"]
        try:
            data = base64.b64decode(body["content"], validate=True)
        except ValueError:
            raise HTTPError(422, "content is not valid Base64") from None
        with g.lock:
            tip = g.branch(branch)
            if tip is None:
                raise HTTPError(404, f"Branch {branch} not found")
            current = g.blob_sha(tip, path)
            if current is not None and not body.get("sha"):
                raise HTTPError(422, "Invalid request.\n\n\"sha\" wasn't supplied.")
            if current is not None and body.get("sha") != current:
                raise HTTPError(409, f"{path} does not match {body.get('sha')}")
            blob = g.hash_blob(data)
            tree = g.make_tree(g.tree_of(tip), {path: blob})
            sha = g.commit_tree(tree, [tip], body["message"], login.removesuffix("[bot]"))
            if not g.set_ref(branch, sha, tip):
                raise HTTPError(409, "Reference update failed: the branch moved")
        status = 200 if current is not None else 201
        ex = self.api.example("put", "/repos/{owner}/{repo}/contents/{path}", str(status))
        content = self._content_obj(repo, path, data, blob)
        ex["content"] = {k: content[k] for k in ex["content"] if k in content}
        commit = self._git_commit_obj(repo, sha)
        ex["commit"] = {k: commit[k] for k in ex["commit"] if k in commit}
        return status, ex

    def _op_get_branch(self, params, **_):
        repo = self._repo(params)
        sha = repo.git.branch(params["branch"])
        if sha is None:
            raise HTTPError(404, "Branch not found")
        ex = self.api.example("get", "/repos/{owner}/{repo}/branches/{branch}", "200")
        ex.update(name=params["branch"], commit=self._commit_obj(repo, sha), protected=False)
        ex["protection_url"] = f"{self.url}/repos/{repo.full_name}/branches/{params['branch']}/protection"
        ex["_links"] = {"self": f"{self.url}/repos/{repo.full_name}/branches/{params['branch']}",
                        "html": f"https://github.example/{repo.full_name}/tree/{params['branch']}"}
        return 200, ex

    def _op_post_git_refs(self, params, body, **_):
        repo = self._repo(params)
        ref = body["ref"]
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise HTTPError(422, "Reference name must start with 'refs/' and have at least two slashes.")
        if not ref.startswith("refs/heads/"):
            raise HTTPError(422, "the fake only stores branches")
        branch = ref[len("refs/heads/"):]
        if repo.git.rev(body["sha"]) is None:
            raise HTTPError(422, "Object does not exist")
        with repo.git.lock:
            if not repo.git.set_ref(branch, body["sha"], ""):
                raise HTTPError(422, "Reference already exists")
        return 201, self._ref_obj(repo, branch, body["sha"])

    def _op_patch_git_refs(self, params, body, **_):
        repo = self._repo(params)
        ref = params["ref"]
        if not ref.startswith("heads/"):
            raise HTTPError(422, "Reference does not exist")
        branch = ref[len("heads/"):]
        g = repo.git
        with g.lock:
            old = g.branch(branch)
            if old is None:
                raise HTTPError(422, "Reference does not exist")
            new = body["sha"]
            if g.rev(new) is None:
                raise HTTPError(422, "Object does not exist")
            if not body.get("force") and not g.is_ancestor(old, new):
                raise HTTPError(422, "Update is not a fast forward")
            if not g.set_ref(branch, new, old):
                raise HTTPError(409, "Reference cannot be updated")
        return 200, self._ref_obj(repo, branch, new)

    def _op_post_git_trees(self, params, body, **_):
        repo = self._repo(params)
        g = repo.git
        entries: dict[str, str | None] = {}
        for e in body["tree"]:
            if e.get("content") is not None:
                entries[e["path"]] = g.hash_blob(e["content"].encode())
            elif e.get("sha") is None:
                entries[e["path"]] = None
            else:
                entries[e["path"]] = e["sha"]
        try:
            tree = g.make_tree(body.get("base_tree"), entries)
        except GitError as err:
            raise HTTPError(422, f"Invalid tree info: {err}") from None
        ex = self.api.example("post", "/repos/{owner}/{repo}/git/trees", "201")
        ex.update(sha=tree, url=f"{self.url}/repos/{repo.full_name}/git/trees/{tree}", truncated=False)
        listing = _git(g.path, "ls-tree", "-r", "-l", tree).splitlines()
        items = []
        for line in listing[:100]:
            meta, path = line.split("\t", 1)
            mode, typ, sha, size = meta.split()
            items.append({"path": path, "mode": mode, "type": typ, "sha": sha,
                          "size": int(size) if size.isdigit() else 0,
                          "url": f"{self.url}/repos/{repo.full_name}/git/blobs/{sha}"})
        ex["tree"] = items
        return 201, ex

    def _op_post_git_commits(self, params, body, login, **_):
        repo = self._repo(params)
        g = repo.git
        parents = body.get("parents") or []
        if any(g.rev(p) is None for p in parents):
            raise HTTPError(422, "Parent SHA does not exist or is not a commit object")
        try:
            sha = g.commit_tree(body["tree"], parents, body["message"], login.removesuffix("[bot]"))
        except GitError:
            raise HTTPError(422, "Tree SHA does not exist") from None
        return 201, self._git_commit_obj(repo, sha)

    def _op_get_pull(self, params, **_):
        repo = self._repo(params)
        pr = repo.pulls.get(int(params["pull_number"]))
        if pr is None:
            raise HTTPError(404, "Not Found")
        return 200, self._pr_obj(repo, pr)

    def _page(self, items: list[Any], query: dict[str, list[str]]) -> tuple[list[Any], dict[str, str]]:
        per = min(int((query.get("per_page") or ["30"])[-1]), 100)
        page = int((query.get("page") or ["1"])[-1])
        chunk = items[(page - 1) * per: page * per]
        headers = {}
        if page * per < len(items):
            headers["Link"] = f'<{self.url}?page={page + 1}&per_page={per}>; rel="next"'
        return chunk, headers

    def _op_get_pull_reviews(self, params, query, **_):
        repo = self._repo(params)
        number = int(params["pull_number"])
        if number not in repo.pulls:
            raise HTTPError(404, "Not Found")
        out = []
        base = self.api.example("get", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews", "200")[0]
        for r in repo.reviews.get(number, []):
            ex = copy.deepcopy(base)
            ex.update(id=r.id, node_id=f"PRR_{r.id}", user=self._user_obj(r.user), body=r.body, state=r.state,
                      commit_id=r.commit_id, submitted_at=r.submitted_at,
                      html_url=f"https://github.example/{repo.full_name}/pull/{number}#pullrequestreview-{r.id}",
                      pull_request_url=f"{self.url}/repos/{repo.full_name}/pulls/{number}")
            out.append(ex)
        chunk, headers = self._page(out, query)
        return 200, chunk, headers

    def _op_get_pull_commits(self, params, query, **_):
        repo = self._repo(params)
        pr = repo.pulls.get(int(params["pull_number"]))
        if pr is None:
            raise HTTPError(404, "Not Found")
        g = repo.git
        head = self.head_sha(repo.full_name, pr.number)
        base = g.branch(pr.base)
        shas = g.log(base, head) if head and base else []
        chunk, headers = self._page([self._commit_obj(repo, s) for s in shas], query)
        return 200, chunk, headers

    def _op_get_compare(self, params, query, **_):
        """REST "Compare two commits" (``{basehead}``, or the description's other template
        ``{base}...{head}``): ``files`` and the counts are of ``merge-base(base, head)..head``."""
        repo = self._repo(params)
        g = repo.git
        params = {**params, "basehead": params.get("basehead") or f"{params['base']}...{params['head']}"}
        base_ref, sep, head_ref = params["basehead"].partition("...")
        if not sep:
            raise HTTPError(404, "Not Found")
        base, head = g.rev(base_ref), g.rev(head_ref)
        if base is None or head is None:
            raise HTTPError(404, "Not Found")
        mb = _git(g.path, "merge-base", base, head).strip()
        ahead, behind = g.log(mb, head), g.log(mb, base)
        status = ("identical" if base == head else "ahead" if not behind else "behind" if not ahead else "diverged")
        ex = self.api.example("get", "/repos/{owner}/{repo}/compare/{basehead}", "200")
        web = f"https://github.example/{repo.full_name}/compare"
        ex.update(url=f"{self.url}/repos/{repo.full_name}/compare/{params['basehead']}",
                  html_url=f"{web}/{params['basehead']}", permalink_url=f"{web}/{repo.owner}:{base}...{repo.owner}:{head}",
                  diff_url=f"{web}/{params['basehead']}.diff", patch_url=f"{web}/{params['basehead']}.patch",
                  base_commit=self._commit_obj(repo, base), merge_base_commit=self._commit_obj(repo, mb),
                  status=status, ahead_by=len(ahead), behind_by=len(behind), total_commits=len(ahead))
        paged = "per_page" in query or "page" in query
        commits, headers = self._page(ahead, query) if paged else (ahead[-250:], {})
        ex["commits"] = [self._commit_obj(repo, c) for c in commits]
        first = int((query.get("page") or ["1"])[-1]) == 1
        ex["files"] = self._diff_entries(repo, mb, head)[:300] if first else []
        return 200, ex, headers

    def _diff_entries(self, repo: Repo, a: str, b: str) -> list[dict[str, Any]]:
        """``files`` of a comparison: ``git diff --name-status -M a b``, each with its patch (the hunks)."""
        g = repo.git
        out = []
        words = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "C": "copied", "T": "changed"}
        for line in _git(g.path, "diff", "--name-status", "-M", a, b).splitlines():
            kind, *paths = line.split("\t")
            path, old = paths[-1], (paths[0] if len(paths) > 1 else None)
            diff = _git(g.path, "diff", "-M", a, b, "--", *([old] if old else []), path)
            hunks = diff[diff.find("@@"):] if "@@" in diff else ""
            numstat = _git(g.path, "diff", "--numstat", "-M", a, b, "--", *([old] if old else []), path).split()
            adds, dels = (int(numstat[0]), int(numstat[1])) if numstat and numstat[0].isdigit() else (0, 0)
            blob = g.blob_sha(a if kind[0] == "D" else b, old if kind[0] == "D" and old else path)
            entry = {"sha": blob, "filename": path, "status": words.get(kind[0], "modified"), "additions": adds,
                     "deletions": dels, "changes": adds + dels,
                     "blob_url": f"https://github.example/{repo.full_name}/blob/{b}/{path}",
                     "raw_url": f"https://github.example/{repo.full_name}/raw/{b}/{path}",
                     "contents_url": f"{self.url}/repos/{repo.full_name}/contents/{path}?ref={b}"}
            if hunks and "Binary files" not in diff:
                entry["patch"] = hunks.rstrip("\n")
            if old and kind[0] in "RC":
                entry["previous_filename"] = old
            out.append(entry)
        return out

    def _op_get_pulls(self, params, query, **_):
        repo = self._repo(params)
        state = (query.get("state") or ["open"])[-1]
        head = (query.get("head") or [None])[-1]
        prs = [p for p in repo.pulls.values() if state == "all" or p.state == state]
        if head:
            owner, _, branch = head.partition(":")
            prs = [p for p in prs if owner == (p.head_repo or repo.full_name).split("/")[0] and p.head == branch]
        chunk, headers = self._page([self._pr_obj(repo, p, simple=True) for p in prs], query)
        return 200, chunk, headers

    def _op_post_pulls(self, params, body, login, **_):
        repo = self._repo(params)
        head, base = body["head"], body["base"]
        if ":" in head:
            owner, head = head.split(":", 1)
        g = repo.git
        if g.branch(base) is None:
            raise HTTPError(422, "Validation Failed", [{"resource": "PullRequest", "field": "base", "code": "invalid"}])
        if g.branch(head) is None:
            raise HTTPError(422, "Validation Failed", [{"resource": "PullRequest", "field": "head", "code": "invalid"}])
        with self._lock:
            for p in repo.pulls.values():
                if p.state == "open" and p.head == head and p.base == base:
                    raise HTTPError(422, "Validation Failed", [{
                        "resource": "PullRequest", "code": "custom",
                        "message": f"A pull request already exists for {repo.owner}:{head}."}])
            if not g.log(g.branch(base), g.branch(head)):
                raise HTTPError(422, "Validation Failed", [{
                    "resource": "PullRequest", "code": "custom", "message": f"No commits between {base} and {head}"}])
            pr = self.open_pr(repo.full_name, head, base=base, user=login, title=body.get("title") or head,
                              body=body.get("body") or "")
        return 201, self._pr_obj(repo, pr)

    def _op_patch_pull(self, params, body, **_):
        repo = self._repo(params)
        pr = repo.pulls.get(int(params["pull_number"]))
        if pr is None:
            raise HTTPError(404, "Not Found")
        if pr.merged and body.get("state") is not None:
            raise HTTPError(422, "Validation Failed", [{
                "resource": "PullRequest", "code": "custom",
                "message": "state cannot be changed. The pull request has been merged."}])
        for k in ("title", "body"):
            if k in body:
                setattr(pr, k, body[k])
        if body.get("state") in ("open", "closed"):
            pr.state = body["state"]
        pr.updated_at = _now()
        return 200, self._pr_obj(repo, pr)

    def _op_get_collaborator_permission(self, params, **_):
        repo = self._repo(params)
        login = params["username"]
        if login not in self.users:
            raise HTTPError(404, f"{login} is not a user")
        role = repo.permissions.get(login, "none")
        legacy = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}.get(role, "none")
        ex = self.api.example("get", "/repos/{owner}/{repo}/collaborators/{username}/permission", "200")
        user = self._user_obj(login)
        ex["user"] = {**{k: user[k] for k in ex["user"] if k in user}, "role_name": role}
        ex.update(permission=legacy, role_name=role)
        return 200, ex

    def _op_get_team_membership(self, params, **_):
        members = self.teams.get((params["org"], params["team_slug"]))
        if members is None or params["username"] not in members:
            raise HTTPError(404, "Not Found")
        ex = self.api.example("get", "/orgs/{org}/teams/{team_slug}/memberships/{username}", "200",
                              "response-if-user-is-a-team-maintainer")
        ex.update(role="member", state="active")
        return 200, ex

    def _issue(self, repo: Repo, number: int) -> None:
        if number not in repo.pulls:
            raise HTTPError(404, "Not Found")

    def _op_get_issue_comments(self, params, query, **_):
        repo = self._repo(params)
        number = int(params["issue_number"])
        self._issue(repo, number)
        items = [self._comment_obj(repo, c) for c in repo.comments.values() if c.issue == number]
        chunk, headers = self._page(items, query)
        return 200, chunk, headers

    def _op_post_issue_comments(self, params, body, login, **_):
        repo = self._repo(params)
        number = int(params["issue_number"])
        self._issue(repo, number)
        c = Comment(id=next(self._ids), issue=number, user=login, body=body["body"], created_at=_now(), updated_at=_now())
        with self._lock:
            repo.comments[c.id] = c
        return 201, self._comment_obj(repo, c), {"Location": f"{self.url}/repos/{repo.full_name}/issues/comments/{c.id}"}

    def _op_patch_issue_comment(self, params, body, login, **_):
        repo = self._repo(params)
        c = repo.comments.get(int(params["comment_id"]))
        if c is None:
            raise HTTPError(404, "Not Found")
        if c.user != login:
            raise HTTPError(403, "You cannot edit someone else's comment")
        c.body, c.updated_at = body["body"], _now()
        return 200, self._comment_obj(repo, c)

    def _op_post_issue_labels(self, params, body, **_):
        repo = self._repo(params)
        number = int(params["issue_number"])
        self._issue(repo, number)
        pr = repo.pulls[number]
        names = body["labels"] if isinstance(body, dict) else body
        names = [n["name"] if isinstance(n, dict) else n for n in names]
        for n in names:
            repo.labels.add(n)
            if n not in pr.labels:
                pr.labels.append(n)
        return 200, [self._label(repo, n) for n in pr.labels]

    def _op_post_status(self, params, body, login, **_):
        repo = self._repo(params)
        sha = params["sha"]
        if repo.git.rev(sha) is None:
            raise HTTPError(422, "No commit found for SHA: " + sha)
        ex = self.api.example("post", "/repos/{owner}/{repo}/statuses/{sha}", "201")
        sid = next(self._ids)
        ex.update(id=sid, node_id=f"S_{sid}", state=body["state"], description=body.get("description"),
                  target_url=body.get("target_url"), context=body.get("context", "default"),
                  creator=self._user_obj(login), created_at=_now(), updated_at=_now(),
                  url=f"{self.url}/repos/{repo.full_name}/statuses/{sha}")
        with self._lock:
            repo.statuses.setdefault(sha, []).append(ex)
        return 201, ex

    # ---- GitHub Actions: workflow_dispatch and runs (issue 14); test controls: workflow_runs, finish_run

    def _op_post_workflow_dispatch(self, params, body, login, **_):
        """As GitHub: the workflow file must exist at ``ref``, declare ``workflow_dispatch`` and every input sent."""
        import yaml

        repo = self._repo(params)
        wf, ref, inputs = params["workflow_id"], body["ref"], body.get("inputs") or {}
        sha = repo.git.branch(ref) or repo.git.rev(ref)
        if sha is None:
            raise HTTPError(422, f"No ref found for: {ref}")
        text = repo.git.read(sha, f".github/workflows/{wf}")
        if text is None:
            raise HTTPError(404, "Not Found")
        doc = yaml.safe_load(text) or {}
        on = doc.get("on", doc.get(True)) or {}  # YAML 1.1 reads a bare `on` key as True
        on = {k: None for k in on} if isinstance(on, list) else ({on: None} if isinstance(on, str) else on)
        if "workflow_dispatch" not in on:
            raise HTTPError(422, "Workflow does not have 'workflow_dispatch' trigger")
        declared = (on["workflow_dispatch"] or {}).get("inputs") or {}
        unexpected = sorted(set(inputs) - set(declared))
        if unexpected:
            raise HTTPError(422, f"Unexpected inputs provided: {unexpected}")
        missing = [k for k, v in declared.items() if (v or {}).get("required") and k not in inputs
                   and (v or {}).get("default") is None]
        if missing:
            raise HTTPError(422, f"Required input '{missing[0]}' not provided")
        run_id = next(self._ids)
        with self._lock:
            self.workflow_runs[run_id] = {"repo": repo.full_name, "workflow": wf, "ref": ref, "sha": sha,
                                          "inputs": dict(inputs), "status": "queued", "conclusion": None}
        if not body.get("return_run_details"):
            return 204, None
        ex = self.api.example("post", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches", "200")
        ex.update(workflow_run_id=run_id, run_url=f"{self.url}/repos/{repo.full_name}/actions/runs/{run_id}",
                  html_url=f"{self.url}/{repo.full_name}/actions/runs/{run_id}")
        return 200, ex

    def _op_get_actions_run(self, params, **_):
        repo = self._repo(params)
        run = self.workflow_runs.get(int(params["run_id"]))
        if run is None or run["repo"] != repo.full_name:
            raise HTTPError(404, "Not Found")
        ex = self.api.example("get", "/repos/{owner}/{repo}/actions/runs/{run_id}", "200")
        ex.update(id=int(params["run_id"]), status=run["status"], conclusion=run["conclusion"], event="workflow_dispatch",
                  head_branch=run["ref"], head_sha=run["sha"],
                  html_url=f"{self.url}/{repo.full_name}/actions/runs/{params['run_id']}")
        return 200, ex

    def finish_run(self, run_id: int, conclusion: str = "success") -> None:
        """Test control: the Actions run ends with ``conclusion`` (success, failure, cancelled...)."""
        with self._lock:
            self.workflow_runs[run_id].update(status="completed", conclusion=conclusion)

    def _op_put_pull_merge(self, params, body, **_):
        repo = self._repo(params)
        number = int(params["pull_number"])
        pr = repo.pulls.get(number)
        if pr is None:
            raise HTTPError(404, "Not Found")
        if pr.state != "open":
            raise HTTPError(405, "Pull Request is not mergeable")
        sha = self.merge_pr(repo.full_name, number)
        ex = self.api.example("put", "/repos/{owner}/{repo}/pulls/{pull_number}/merge", "200")
        ex.update(sha=sha, merged=True, message="Pull Request successfully merged")
        return 200, ex

    def _op_post_installation_token(self, params, body, **_):
        token = f"ghs_{next(self._ids)}fake{int(time.time() * 1000)}"
        expires = time.time() + self.token_ttl
        self.tokens[token] = (f"{self.app_slug}[bot]", expires)
        self.minted.append(token)
        ex = self.api.example("post", "/app/installations/{installation_id}/access_tokens", "201")
        ex.update(token=token, expires_at=datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        ex.pop("repositories", None)
        return 201, ex


_OPS = {
    ("GET", "/repos/{owner}/{repo}"): "get_repo",
    ("GET", "/repos/{owner}/{repo}/contents/{path}"): "get_contents",
    ("PUT", "/repos/{owner}/{repo}/contents/{path}"): "put_contents",
    ("GET", "/repos/{owner}/{repo}/branches/{branch}"): "get_branch",
    ("POST", "/repos/{owner}/{repo}/git/refs"): "post_git_refs",
    ("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}"): "patch_git_refs",
    ("POST", "/repos/{owner}/{repo}/git/trees"): "post_git_trees",
    ("POST", "/repos/{owner}/{repo}/git/commits"): "post_git_commits",
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"): "get_pull",
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"): "get_pull_reviews",
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits"): "get_pull_commits",
    ("GET", "/repos/{owner}/{repo}/pulls"): "get_pulls",
    ("GET", "/repos/{owner}/{repo}/compare/{basehead}"): "get_compare",
    ("GET", "/repos/{owner}/{repo}/compare/{base}...{head}"): "get_compare",
    ("POST", "/repos/{owner}/{repo}/pulls"): "post_pulls",
    ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}"): "patch_pull",
    ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission"): "get_collaborator_permission",
    ("GET", "/orgs/{org}/teams/{team_slug}/memberships/{username}"): "get_team_membership",
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments"): "get_issue_comments",
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"): "post_issue_comments",
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"): "patch_issue_comment",
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels"): "post_issue_labels",
    ("POST", "/repos/{owner}/{repo}/statuses/{sha}"): "post_status",
    ("POST", "/app/installations/{installation_id}/access_tokens"): "post_installation_token",
    ("POST", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"): "post_workflow_dispatch",
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}"): "get_actions_run",
    ("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/merge"): "put_pull_merge",
    ("GET", "/repos/{owner}/{repo}/installation"): "get_repo_installation",
    ("GET", "/user"): "get_user",
    ("GET", "/app"): "get_app",
}


def _op_name(method: str, template: str) -> str:
    return _OPS.get((method, template), "unsupported")


def app_keypair() -> tuple[str, str]:
    """(private PEM, public PEM) of a fresh RSA key for a fake GitHub App."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


__all__ = ["FakeGitHub", "OpenAPI", "openapi", "app_keypair", "GitError"]
