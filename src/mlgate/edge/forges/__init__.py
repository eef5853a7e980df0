"""Forge adapters (GitHub through PyGithub, GitLab through python-gitlab) behind one small interface.

:func:`make_forge` builds one for the bot from its settings; :func:`writer_from_env`
gives ``mlgate promote`` (GitOps mode ``pull-request``) a :class:`ForgeWriter` from ``MLGATE_*`` variables.
PyGithub and python-gitlab are imported only when a forge is built.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from mlgate.core.errors import UsageError
from mlgate.core.promotion import Change, WriteResult

from mlgate.edge.forges.base import (  # noqa: F401  (re-exported names)
    MARKER,
    STATUS_CONTEXT,
    describe_change,
    FileEdit,
    Forge,
    ForgeBusy,
    ForgeError,
    ForgeUnreachable,
    GitLabApprovals,
    PromotionRequest,
    PromotionResult,
    PullRequest,
    RepoAccess,
    repo_path,
)


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    get = getattr(value, "get_secret_value", None)
    return get() if get else str(value)


def github_installation_id(settings: Any, repo: str) -> int | None:
    """The id of the bot's GitHub App installation on ``repo``, for events that carry none (MLflow
    registry webhooks, issue 13); None when the bot has no App credentials (it uses ``github_token``).

    GitHub REST "Get a repository installation for the authenticated app"
    (``GET /repos/{owner}/{repo}/installation``, authenticated with the App's JWT).

    Raises:
        ForgeError: the App is not installed on ``repo``, or GitHub refused the request;
        ForgeBusy: GitHub is unreachable or answered 5xx/rate-limited.
    """
    app_id, key = getattr(settings, "github_app_id", None), _secret(getattr(settings, "github_private_key", None))
    if not app_id or not key:
        return None
    from github import Auth, GithubException, GithubIntegration  # lazily: PyGithub is the bot extra's

    owner, _, name = repo.partition("/")
    gi = GithubIntegration(auth=Auth.AppAuth(app_id, key),
                           base_url=getattr(settings, "github_api_url", "https://api.github.com"))
    try:
        return int(gi.get_repo_installation(owner, name).id)
    except GithubException as e:
        if e.status in (429,) or e.status >= 500:
            raise ForgeBusy(f"GitHub answered {e.status} for the App installation of {repo}", None) from None
        raise ForgeError(f"the GitHub App is not installed on {repo} (GitHub answered {e.status}): install it there, "
                         "or set github_token") from None
    except OSError as e:
        raise ForgeBusy(f"GitHub is unreachable ({type(e).__name__}) reading the App installation of {repo}", None) from None


def make_forge(name: str, settings: Any, installation_id: int | None = None) -> Forge:
    """A forge client for one delivery.

    Args:
        name: "github" or "gitlab".
        settings: :class:`mlgate.bot.settings.BotSettings` (``github_api_url``, ``github_app_id``,
            ``github_private_key``, ``github_token``, ``gitlab_url``, ``gitlab_token``, ``bot_login``;
            optional ``github_write_interval`` seconds between content-creating requests, default 1.0;
            optional ``github_api``: "graphql" (default) or "rest" for promotion PRs).
        installation_id: the GitHub App installation of the delivery (from its payload).

    Raises:
        ForgeError: no credentials for that forge.
    """
    if name == "github":
        try:
            from mlgate.edge.forges.github import GitHubForge  # lazily: PyGithub is the bot extra's
        except ImportError as e:
            raise UsageError(f"talking to GitHub needs the {e.name!r} package: pip install 'mlgate[bot]'") from None

        app_id = getattr(settings, "github_app_id", None)
        key = _secret(getattr(settings, "github_private_key", None))
        interval = getattr(settings, "github_write_interval", None)
        return GitHubForge(
            getattr(settings, "github_api_url", "https://api.github.com"),
            token=_secret(getattr(settings, "github_token", None)),
            app_id=app_id if installation_id else None,
            private_key=key if installation_id else None,
            installation_id=installation_id,
            write_interval=1.0 if interval is None else float(interval),
            request_interval=0.25 if interval is None else min(0.25, float(interval)),
            bot_login=getattr(settings, "bot_login", None),
            api=getattr(settings, "github_api", None) or "graphql",
        )
    if name == "gitlab":
        try:
            from mlgate.edge.forges.gitlab import GitLabForge  # lazily: python-gitlab is the bot extra's
        except ImportError as e:
            raise UsageError(f"talking to GitLab needs the {e.name!r} package: pip install 'mlgate[bot]'") from None

        return GitLabForge(
            getattr(settings, "gitlab_url", "https://gitlab.com"),
            token=_secret(getattr(settings, "gitlab_token", None)),
            bot_login=getattr(settings, "bot_login", None),
        )
    raise ForgeError(f"unknown forge {name!r} (github or gitlab)")


class ForgeWriter:
    """Writes a promotion through a forge's API (:class:`mlgate.edge.git.PromotionWriter`).

    ``pull-request`` mode opens (or updates) the promotion PR/MR on the promotion's branch
    (:attr:`mlgate.core.promotion.Promotion.branch`: a promotion's, or a canary step's) with
    its title, body and labels; ``push`` mode commits straight to the branch through the API.

    Args:
        forge_for: the forge client for a repository (``owner/name`` or URL).
        mode: ``pull-request`` or ``push``.
    """

    def __init__(self, forge_for: Callable[[str], Forge], mode: str = "pull-request"):
        self._forge_for = forge_for
        self.mode = mode

    def write(self, change: Change) -> WriteResult:
        """Raises ForgeError/ForgeBusy (forge trouble), ManifestError (the edit failed),
        UsageError (a change that carries no promotion)."""
        p = change.promotion
        if p is None:
            raise UsageError("a forge writer writes promotions only (the change carries none)")
        forge = self._forge_for(change.repository)
        req = PromotionRequest(
            repo=repo_path(change.repository), base=change.branch, branch=p.branch,
            edits=(FileEdit(change.path, change.edit),), message=change.message, title=p.title,
            body=change.body or p.body(), labels=p.labels, mode=self.mode,
        )
        res = forge.open_promotion(req)
        url = res.url if self.mode != "push" else None
        return WriteResult(commit=res.commit, url=url, changed=res.changed, diff=describe_change(res.diff),
                           created=res.created, number=res.number, api_calls=res.api_calls)


def writer_from_env(environ: Mapping[str, str] | None = None) -> ForgeWriter:
    """A pull-request writer from ``MLGATE_GITHUB_TOKEN``/``MLGATE_GITHUB_API_URL`` or
    ``MLGATE_GITLAB_TOKEN``/``MLGATE_GITLAB_URL`` (``MLGATE_FORGE`` chooses when both are set;
    otherwise a repository URL whose host contains "gitlab" goes to GitLab).
    ``MLGATE_GITHUB_WRITE_INTERVAL``: seconds between content-creating GitHub requests (default 1).
    ``MLGATE_GITHUB_API``: ``graphql`` (default: a promotion PR in 3 round trips) or ``rest``
    (GitHub Enterprise Server without ``createCommitOnBranch``).

    Raises:
        ForgeError: no token for the forge the repository is on.
    """
    return ForgeWriter(lambda repository: forge_from_env(repository, environ))


def forge_from_env(repository: str, environ: Mapping[str, str] | None = None) -> Forge:
    """A forge client for ``repository`` from ``MLGATE_*`` variables (as :func:`writer_from_env`).

    Raises:
        ForgeError: no token for the forge the repository is on.
    """
    env = os.environ if environ is None else environ
    choice = env.get("MLGATE_FORGE")
    if not choice:
        if "gitlab" in repository.lower() or (env.get("MLGATE_GITLAB_TOKEN") and not env.get("MLGATE_GITHUB_TOKEN")):
            choice = "gitlab"
        else:
            choice = "github"
    settings = type("S", (), {
        "github_api_url": env.get("MLGATE_GITHUB_API_URL", "https://api.github.com"),
        "github_token": env.get("MLGATE_GITHUB_TOKEN"),
        "gitlab_url": env.get("MLGATE_GITLAB_URL", "https://gitlab.com"),
        "gitlab_token": env.get("MLGATE_GITLAB_TOKEN"),
        "github_write_interval": float(env["MLGATE_GITHUB_WRITE_INTERVAL"])
        if env.get("MLGATE_GITHUB_WRITE_INTERVAL") else None,
        "github_api": env.get("MLGATE_GITHUB_API") or "graphql",
    })()
    return make_forge(choice, settings)
