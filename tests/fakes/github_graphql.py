"""The fake GitHub's ``POST /graphql``: GitHub's published schema, the fake's git-backed state.

Every document is parsed and validated against GitHub's public schema (npm
``@octokit/graphql-schema``, ``schema.graphql``) with graphql-core (``graphql.validate``), and its
variables are coerced to their declared types (``get_variable_values``): an unknown field,
argument, input field or type is refused as GitHub refuses it, with HTTP 200 and
``{"errors": [{"message", "locations", "extensions": {"code": ...}}]}`` (GitHub answers schema
errors with 200, as graphql-js servers do), **and recorded in ``FakeGitHub.errors``**, so a test
fails on a document GitHub would reject. A JSON body without ``query`` is a 400 as on GitHub.

Valid documents run through ``graphql.execute`` on the same schema (mutation root fields run
serially, GraphQL spec section 6.2.2), so every answer has GitHub's shape: a non-null field the
resolvers leave empty is an error, not a silent null. Resolvers read and write the same bare git
repositories, pull requests and labels the REST side serves. Refusals (a stale
``expectedHeadOid``, a ref or PR that already exists, an unknown node id) are GraphQL errors with
GitHub's ``type`` (``STALE_DATA``, ``UNPROCESSABLE``, ``NOT_FOUND``) and ``path``, beside the
data of the fields that did run.

Supported: ``repository(owner, name)`` → ``id``, ``nameWithOwner``, ``ref(qualifiedName)``
(``id``, ``name``, ``prefix``, ``target { oid }``), ``object(expression: "REV:PATH")`` (``Blob``:
``text``, ``oid``, ``byteSize``, ``isBinary``; ``Commit``: ``oid``), ``label(name)``,
``pullRequests(headRefName, baseRefName, states, first)``; mutations ``createRef``,
``updateRef``, ``createCommitOnBranch``, ``createPullRequest``, ``updatePullRequest``,
``addLabelsToLabelable``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.github_server import PR, FakeGitHub, Repo

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "node_modules" / "@octokit" / "graphql-schema" / "schema.graphql"


_BUILD = threading.Lock()


def schema() -> Any:
    """GitHub's schema, built once per process (about 1 s; a caller during the build waits for it).
    ``assume_valid_sdl``: the published SDL defines two ``EnterpriseOwnerInfo`` fields twice, which
    graphql-core's SDL check refuses; the types themselves are complete."""
    with _BUILD:
        return _build()


@functools.lru_cache(maxsize=1)
def _build() -> Any:
    import graphql

    return graphql.build_schema(SCHEMA_PATH.read_text(), assume_valid_sdl=True)


class GitHubGraphQLError(Exception):
    """A refusal inside a resolver, sent as ``{"type", "message", "path", "locations"}``."""

    def __init__(self, type_: str, message: str):
        super().__init__(message)
        self.type = type_


def root_fields(document: Any) -> list[str]:
    """Names of the root fields of a parsed document's operations (for hooks and call counts)."""
    out = []
    for d in document.definitions:
        sel = getattr(d, "selection_set", None)
        if getattr(d, "operation", None) is not None and sel is not None:
            out += [s.name.value for s in sel.selections if hasattr(s, "name")]
    return out


class GraphQLEndpoint:
    """``POST /graphql`` of one :class:`FakeGitHub` (its state, its lock, its ``errors``)."""

    def __init__(self, fake: "FakeGitHub"):
        self.fake = fake
        self.schema = schema()
        #: node id → ("ref", repo full name, branch)
        self.refs: dict[str, tuple[str, str]] = {}

    # ------------------------------------------------------------ the request

    def parse(self, body: Any) -> tuple[Any, list[str], dict[str, Any] | None]:
        """(parsed document or None, root field names, an answer when it must not run)."""
        import graphql

        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            self.fake.errors.append("POST /graphql: the body has no query string")
            return None, [], {"message": "A query attribute must be specified and must be a string."}
        try:
            doc = graphql.parse(body["query"])
        except graphql.GraphQLError as e:
            self.fake.errors.append(f"POST /graphql: parse error: {e.message}")
            return None, [], {"errors": [self._format(e, "parseError")]}
        fields = root_fields(doc)
        problems = graphql.validate(self.schema, doc)
        if not problems:
            problems = self._variable_errors(doc, body.get("variables") or {}, body.get("operationName"))
        if problems:
            self.fake.errors.append("POST /graphql: invalid document or variables: "
                                    + "; ".join(p.message for p in problems))
            return doc, fields, {"errors": [self._format(p) for p in problems]}
        return doc, fields, None

    def _variable_errors(self, doc: Any, variables: Any, operation: str | None) -> list[Any]:
        import graphql
        from graphql.execution.values import get_variable_values

        if not isinstance(variables, dict):
            return [graphql.GraphQLError("Variables are invalid JSON.")]
        ops = [d for d in doc.definitions if isinstance(d, graphql.OperationDefinitionNode)
               and (operation is None or (d.name and d.name.value == operation))]
        if len(ops) != 1:
            return [graphql.GraphQLError("An operation name is required" if ops else "No operation named")]
        got = get_variable_values(self.schema, ops[0].variable_definitions or [], variables)
        return got if isinstance(got, list) else []

    #: GitHub's ``extensions.code`` for the kinds of schema errors mlgate could make
    CODES = (("Cannot query field", "undefinedField"), ("Unknown argument", "argumentNotAccepted"),
             ("Variable", "variableMismatch"), ("Field", "missingRequiredArguments"), ("Syntax Error", "parseError"))

    @classmethod
    def _format(cls, e: Any, code: str | None = None) -> dict[str, Any]:
        out = {"message": e.message, "locations": [{"line": loc.line, "column": loc.column} for loc in e.locations or []]}
        if e.path:
            out["path"] = list(e.path)
        code = code or next((c for prefix, c in cls.CODES if e.message.startswith(prefix)), "invalidDocument")
        out["extensions"] = {"code": code}
        return out

    def repository_of(self, body: Any) -> str | None:
        """The repository a request's variables name (``owner``/``name``, ``repositoryNameWithOwner``,
        or a node id of a repository, ref or PR), for the recorded path; None when it names none."""
        stack = [body.get("variables") if isinstance(body, dict) else None]
        while stack:
            v = stack.pop()
            if isinstance(v, list):
                stack += v
            if not isinstance(v, dict):
                continue
            if isinstance(v.get("owner"), str) and isinstance(v.get("name"), str):
                return f"{v['owner']}/{v['name']}"
            if isinstance(v.get("repositoryNameWithOwner"), str):
                return v["repositoryNameWithOwner"]
            for key in ("repositoryId", "labelableId", "pullRequestId", "refId"):
                node = v.get(key)
                if isinstance(node, str):
                    if node in self.refs:
                        return self.refs[node][0]
                    for repo in self.fake.repos.values():
                        if node == self.repo_id(repo) or any(f"PR_{p.id}" == node for p in repo.pulls.values()):
                            return repo.full_name
            stack += list(v.values())
        return None

    def execute(self, doc: Any, body: dict[str, Any], login: str) -> dict[str, Any]:
        """Run a validated document; ``{"data": ..., "errors": [...]}`` shaped as GitHub's."""
        import graphql

        result = graphql.execute(self.schema, doc, root_value=self._root(login),
                                 variable_values=body.get("variables") or {}, operation_name=body.get("operationName"))
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            errs = []
            for e in result.errors:
                orig = e.original_error
                if not isinstance(orig, GitHubGraphQLError):
                    self.fake.errors.append(f"POST /graphql: fake crashed or broke the schema: {e.message}")
                errs.append({"type": orig.type if isinstance(orig, GitHubGraphQLError) else "INTERNAL",
                             "path": list(e.path or []), "message": e.message,
                             "locations": [{"line": loc.line, "column": loc.column} for loc in e.locations or []]})
            out["errors"] = errs
        return out

    # ------------------------------------------------------------ objects

    def _root(self, login: str) -> dict[str, Any]:
        return {
            "repository": lambda info, owner, name, **_: self._repository(owner, name),
            "createRef": lambda info, input: self._create_ref(input),
            "updateRef": lambda info, input: self._update_ref(input),
            "createCommitOnBranch": lambda info, input: self._commit_on_branch(input, login),
            "createPullRequest": lambda info, input: self._create_pr(input, login),
            "updatePullRequest": lambda info, input: self._update_pr(input),
            "addLabelsToLabelable": lambda info, input: self._add_labels(input),
        }

    def _repo_by(self, full_name: str) -> "Repo":
        repo = self.fake.repos.get(full_name)
        if repo is None:
            raise GitHubGraphQLError("NOT_FOUND", f"Could not resolve to a Repository with the name '{full_name}'.")
        return repo

    def _repo_by_id(self, node_id: str) -> "Repo":
        for repo in self.fake.repos.values():
            if self.repo_id(repo) == node_id:
                return repo
        raise GitHubGraphQLError("NOT_FOUND", f"Could not resolve to a node with the global id of '{node_id}'")

    @staticmethod
    def repo_id(repo: "Repo") -> str:
        return f"R_{repo.id}"

    def _repository(self, owner: str, name: str) -> dict[str, Any]:
        repo = self._repo_by(f"{owner}/{name}")
        return {
            "__typename": "Repository", "id": self.repo_id(repo), "name": repo.name, "nameWithOwner": repo.full_name,
            "ref": lambda info, qualifiedName: self._ref(repo, qualifiedName),
            "object": lambda info, expression=None, oid=None: self._object(repo, expression or oid or ""),
            "label": lambda info, name: self._label(repo, name),
            "pullRequests": lambda info, **kw: self._pulls(repo, **kw),
        }

    def _ref(self, repo: "Repo", qualified: str) -> dict[str, Any] | None:
        branch = qualified.removeprefix("refs/heads/")
        sha = repo.git.branch(branch)
        if sha is None:
            return None
        node_id = "REF_" + base64.urlsafe_b64encode(f"{repo.full_name}:{branch}".encode()).decode().rstrip("=")
        self.refs[node_id] = (repo.full_name, branch)
        return {"__typename": "Ref", "id": node_id, "name": branch, "prefix": "refs/heads/",
                "target": {"__typename": "Commit", "id": f"C_{sha}", "oid": sha}}

    def _object(self, repo: "Repo", expression: str) -> dict[str, Any] | None:
        rev, sep, path = expression.partition(":")
        commit = repo.git.rev(rev) or repo.git.branch(rev)
        if commit is None:
            return None
        if not sep:
            return {"__typename": "Commit", "id": f"C_{commit}", "oid": commit}
        data = repo.git.read(commit, path)
        if data is None:
            return None
        try:
            text: str | None = data.decode()
        except UnicodeDecodeError:
            text = None
        sha = repo.git.blob_sha(commit, path)
        return {"__typename": "Blob", "id": f"B_{sha}", "oid": sha, "text": text, "byteSize": len(data),
                "isBinary": text is None, "isTruncated": False}

    def _label(self, repo: "Repo", name: str) -> dict[str, Any] | None:
        if name not in repo.labels:
            return None
        return {"__typename": "Label", "id": self.label_id(repo, name), "name": name, "color": "ededed"}

    @staticmethod
    def label_id(repo: "Repo", name: str) -> str:
        return "LA_" + base64.urlsafe_b64encode(f"{repo.full_name}:{name}".encode()).decode().rstrip("=")

    def _pulls(self, repo: "Repo", headRefName=None, baseRefName=None, states=None, first=None, **_) -> dict[str, Any]:
        want = {s.lower() for s in states or []}
        prs = [p for p in repo.pulls.values() if p.head_repo is None
               and (headRefName is None or p.head == headRefName) and (baseRefName is None or p.base == baseRefName)
               and (not want or ("merged" if p.merged else p.state) in want)]
        nodes = [self._pr(repo, p) for p in prs[: first or 100]]
        return {"nodes": nodes, "totalCount": len(prs),
                "pageInfo": {"hasNextPage": len(prs) > len(nodes), "hasPreviousPage": False}}

    def _pr(self, repo: "Repo", pr: "PR") -> dict[str, Any]:
        state = "MERGED" if pr.merged else pr.state.upper()
        return {"__typename": "PullRequest", "id": f"PR_{pr.id}", "number": pr.number, "title": pr.title,
                "body": pr.body, "state": state, "headRefName": pr.head, "baseRefName": pr.base,
                "url": f"https://github.example/{repo.full_name}/pull/{pr.number}",
                "labels": lambda info, **kw: {"nodes": [{"__typename": "Label", "id": self.label_id(repo, n), "name": n}
                                                        for n in pr.labels], "totalCount": len(pr.labels)}}

    def _find_pr(self, node_id: str) -> tuple["Repo", "PR"]:
        for repo in self.fake.repos.values():
            for pr in repo.pulls.values():
                if f"PR_{pr.id}" == node_id:
                    return repo, pr
        raise GitHubGraphQLError("NOT_FOUND", f"Could not resolve to a node with the global id of '{node_id}'")

    # ------------------------------------------------------------ mutations

    def _create_ref(self, inp: dict[str, Any]) -> dict[str, Any]:
        repo = self._repo_by_id(inp["repositoryId"])
        name = inp["name"]
        if not name.startswith("refs/heads/"):
            raise GitHubGraphQLError("UNPROCESSABLE", f"Reference {name!r} is not a branch (the fake stores branches).")
        if repo.git.rev(inp["oid"]) is None:
            raise GitHubGraphQLError("UNPROCESSABLE", f"Object {inp['oid']} does not exist.")
        branch = name.removeprefix("refs/heads/")
        with repo.git.lock:
            if not repo.git.set_ref(branch, inp["oid"], ""):
                raise GitHubGraphQLError("UNPROCESSABLE", f"A ref named \"{name}\" already exists in the repository.")
        return {"clientMutationId": inp.get("clientMutationId"), "ref": self._ref(repo, name)}

    def _update_ref(self, inp: dict[str, Any]) -> dict[str, Any]:
        full, branch = self.refs.get(inp["refId"], (None, None))
        if full is None:
            raise GitHubGraphQLError("NOT_FOUND", f"Could not resolve to a node with the global id of '{inp['refId']}'")
        repo = self._repo_by(full)
        g = repo.git
        with g.lock:
            old = g.branch(branch)
            if old is None or g.rev(inp["oid"]) is None:
                raise GitHubGraphQLError("NOT_FOUND", "Could not resolve the ref or the object.")
            if not inp.get("force") and not g.is_ancestor(old, inp["oid"]):
                raise GitHubGraphQLError("UNPROCESSABLE", "Update is not a fast forward")
            g.set_ref(branch, inp["oid"], old)
        return {"clientMutationId": inp.get("clientMutationId"), "ref": self._ref(repo, f"refs/heads/{branch}")}

    def _commit_on_branch(self, inp: dict[str, Any], login: str) -> dict[str, Any]:
        target = inp["branch"]
        if target.get("id"):
            full, branch = self.refs.get(target["id"], (None, None))
        else:
            full, branch = target.get("repositoryNameWithOwner"), target.get("branchName")
        if not full or not branch:
            raise GitHubGraphQLError("UNPROCESSABLE", "A branch is given by its id or by repositoryNameWithOwner and branchName.")
        repo = self._repo_by(full)
        g = repo.git
        changes: dict[str, str | None] = {}
        for add in (inp.get("fileChanges") or {}).get("additions") or []:
            try:
                changes[add["path"]] = g.hash_blob(base64.b64decode(add["contents"], validate=True))
            except (binascii.Error, ValueError):
                raise GitHubGraphQLError("UNPROCESSABLE", f"contents of {add['path']} is not valid Base64") from None
        for rm in (inp.get("fileChanges") or {}).get("deletions") or []:
            changes[rm["path"]] = None
        message = inp["message"]["headline"] + (f"\n\n{inp['message']['body']}" if inp["message"].get("body") else "")
        with g.lock:
            tip = g.branch(branch)
            if tip is None:
                raise GitHubGraphQLError("NOT_FOUND", f"A ref named \"refs/heads/{branch}\" does not exist.")
            if tip != inp["expectedHeadOid"]:
                raise GitHubGraphQLError(
                    "STALE_DATA", f"Expected branch to point to \"{inp['expectedHeadOid']}\" but it did not. Pull and try again.")
            sha = g.commit_tree(g.make_tree(g.tree_of(tip), changes), [tip], message, login.removesuffix("[bot]"))
            g.set_ref(branch, sha, tip)
        return {"clientMutationId": inp.get("clientMutationId"), "ref": self._ref(repo, f"refs/heads/{branch}"),
                "commit": {"__typename": "Commit", "id": f"C_{sha}", "oid": sha,
                           "url": f"https://github.example/{repo.full_name}/commit/{sha}"}}

    def _create_pr(self, inp: dict[str, Any], login: str) -> dict[str, Any]:
        repo = self._repo_by_id(inp["repositoryId"])
        head, base = inp["headRefName"], inp["baseRefName"]
        g = repo.git
        with self.fake._lock:
            if g.branch(base) is None or g.branch(head) is None:
                raise GitHubGraphQLError("UNPROCESSABLE", f"Head sha can't be blank, Base sha can't be blank, "
                                                          f"No commits between {base} and {head}")
            if any(p.state == "open" and p.head == head and p.base == base and p.head_repo is None
                   for p in repo.pulls.values()):
                raise GitHubGraphQLError("UNPROCESSABLE", f"A pull request already exists for {repo.owner}:{head}.")
            if not g.log(g.branch(base), g.branch(head)):
                raise GitHubGraphQLError("UNPROCESSABLE", f"No commits between {base} and {head}")
            pr = self.fake.open_pr(repo.full_name, head, base=base, user=login, title=inp["title"],
                                   body=inp.get("body") or "")
        return {"clientMutationId": inp.get("clientMutationId"), "pullRequest": self._pr(repo, pr)}

    def _update_pr(self, inp: dict[str, Any]) -> dict[str, Any]:
        repo, pr = self._find_pr(inp["pullRequestId"])
        for k in ("title", "body"):
            if inp.get(k) is not None:
                setattr(pr, k, inp[k])
        return {"clientMutationId": inp.get("clientMutationId"), "pullRequest": self._pr(repo, pr)}

    def _add_labels(self, inp: dict[str, Any]) -> dict[str, Any]:
        repo, pr = self._find_pr(inp["labelableId"])
        names = {self.label_id(repo, n): n for n in repo.labels}
        for lid in inp["labelIds"]:
            if lid not in names:
                raise GitHubGraphQLError("NOT_FOUND", f"Could not resolve to a node with the global id of '{lid}'")
            if names[lid] not in pr.labels:
                pr.labels.append(names[lid])
        return {"clientMutationId": inp.get("clientMutationId"), "labelable": self._pr(repo, pr)}
