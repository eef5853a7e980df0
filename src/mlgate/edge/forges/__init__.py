"""Forge adapters (GitHub through PyGithub, GitLab through python-gitlab) behind one small interface.

:func:`make_forge` builds one for the bot from its settings; :func:`promotion_writer_from_env`
gives ``mlgate promote`` (GitOps mode ``pull-request``) a writer from ``MLGATE_*`` variables.
PyGithub and python-gitlab are imported only when a forge is built.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

from mlgate.edge.forges.base import (  # noqa: F401  (re-exported names)
    MARKER,
    STATUS_CONTEXT,
    FileEdit,
    Forge,
    ForgeBusy,
    ForgeError,
    GitLabApprovals,
    PromotionRequest,
    PromotionResult,
    PullRequest,
    parse_promotion_branch,
    promotion_branch,
    repo_path,
)


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    get = getattr(value, "get_secret_value", None)
    return get() if get else str(value)


def make_forge(name: str, settings: Any, installation_id: int | None = None) -> Forge:
    """A forge client for one delivery.

    Args:
        name: "github" or "gitlab".
        settings: :class:`mlgate.bot.settings.BotSettings` (``github_api_url``, ``github_app_id``,
            ``github_private_key``, ``github_token``, ``gitlab_url``, ``gitlab_token``, ``bot_login``;
            optional ``github_write_interval`` seconds between content-creating requests, default 1.0).
        installation_id: the GitHub App installation of the delivery (from its payload).

    Raises:
        ForgeError: no credentials for that forge.
    """
    if name == "github":
        from mlgate.edge.forges.github import GitHubForge

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
        )
    if name == "gitlab":
        from mlgate.edge.forges.gitlab import GitLabForge

        return GitLabForge(
            getattr(settings, "gitlab_url", "https://gitlab.com"),
            token=_secret(getattr(settings, "gitlab_token", None)),
            bot_login=getattr(settings, "bot_login", None),
        )
    raise ForgeError(f"unknown forge {name!r} (github or gitlab)")


class _ForgeWriter:
    """:class:`mlgate.edge.git.PromotionWriter` for mode ``pull-request`` (used by ``mlgate promote``)."""

    def __init__(self, forge_for: Any):
        self._forge_for = forge_for

    def write(self, change: Any) -> Any:
        from mlgate.edge.git import PromotionResult as GitopsResult
        from mlgate.edge.forges.base import describe_change

        forge = self._forge_for(change.repository)
        first = change.message.splitlines()[0] if change.message else "promotion"
        m = re.search(r"mlgate: (?P<model>[\w.-]+)@(?P<version>\d+) -> (?P<env>[\w.-]+)", change.message or "")
        if m:
            branch = promotion_branch(m["model"], m["env"], m["version"])
        else:
            branch = "mlgate/promote/" + (re.sub(r"[^a-z0-9.]+", "-", first.lower()).strip("-")[:60] or "change")
        req = PromotionRequest(
            repo=repo_path(change.repository), base=change.branch, branch=branch,
            edits=(FileEdit(change.path, change.edit),), message=change.message, title=first,
            body=f"{first}\n\nOpened by `mlgate promote`.\n\n**Change:** {{{{mlgate:change}}}}",
        )
        res = forge.open_promotion(req)
        return GitopsResult(commit=res.commit, url=res.url, changed=res.changed, diff=describe_change(res.diff))


def promotion_writer_from_env(environ: Mapping[str, str] | None = None) -> Any:
    """A pull-request writer from ``MLGATE_GITHUB_TOKEN``/``MLGATE_GITHUB_API_URL`` or
    ``MLGATE_GITLAB_TOKEN``/``MLGATE_GITLAB_URL`` (``MLGATE_FORGE`` chooses when both are set;
    otherwise a repository URL whose host contains "gitlab" goes to GitLab).
    ``MLGATE_GITHUB_WRITE_INTERVAL``: seconds between content-creating GitHub requests (default 1).

    Raises:
        ForgeError: no token for the forge the repository is on.
    """
    return _ForgeWriter(lambda repository: forge_from_env(repository, environ))


def forge_from_env(repository: str, environ: Mapping[str, str] | None = None) -> Forge:
    """A forge client for ``repository`` from ``MLGATE_*`` variables (as :func:`promotion_writer_from_env`).

    Raises:
        ForgeError: no token for the forge the repository is on.
    """
    env = os.environ if environ is None else environ
    choice = env.get("MLGATE_FORGE")
    if not choice:
        if env.get("MLGATE_GITLAB_TOKEN") and ("gitlab" in repository or not env.get("MLGATE_GITHUB_TOKEN")):
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
    })()
    return make_forge(choice, settings)
