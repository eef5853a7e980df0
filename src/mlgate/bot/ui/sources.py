"""The dashboard's read ports on the bot's own parts: its store (audit records, canaries, failed
deliveries), the forges (``.mlgate.yml`` on a model repository's default branch) and the MLflow
Model Registry. Read-only: nothing here writes to the database, a forge or the registry."""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import Any

from mlgate.core import config as cfgmod
from mlgate.core.canary.records import CanaryRecord
from mlgate.core.config import Config
from mlgate.core.dashboard import FailedDelivery
from mlgate.core.errors import ConfigError, MlgateError
from mlgate.bot.handlers.common import tracking_uri_for
from mlgate.edge.db.canaries import CanaryStore
from mlgate.edge.db.store import Store
from mlgate.edge.forges import make_forge
from mlgate.edge.registry import Registry

CONFIG_FILE = ".mlgate.yml"


class StoreSources:
    """:class:`mlgate.flows.dashboard.Sources` for ``mlgate bot serve``.

    Args:
        settings: the bot's settings (forge credentials, ``tracking_uri``).
        store: the bot's store (the same database the workers write).
    """

    def __init__(self, settings: Any, store: Store):
        self.settings, self.store = settings, store
        self._redact = settings.redactor(os.environ)
        self._canaries = CanaryStore(store.engine)
        self._registries: dict[str, Registry] = {}
        # the newest ui_audit_records only: the audit table is append-only and never pruned, so a bot
        # of some years would otherwise hold all of it in memory (mlgate audit exports everything)
        self._audit: deque[dict] = deque(maxlen=settings.ui_audit_records)
        self._lock = threading.Lock()

    def audit_records(self) -> list[dict]:
        """The newest ``ui_audit_records`` audit records, oldest first. Audit records are append-only
        (the database refuses updates and deletes), so the records read before are kept and only
        newer ones are read."""
        with self._lock:
            last = self._audit[-1]["id"] if self._audit else 0
            self._audit.extend(self.store.audit_records(after=last, newest=self._audit.maxlen))
            return list(self._audit)

    def canaries(self) -> list[CanaryRecord]:
        return list(self._canaries.list())

    def failed_deliveries(self) -> list[FailedDelivery]:
        return [FailedDelivery(d.id, d.forge, d.event, self._redact.text(d.error or ""), d.attempts)
                for d in self.store.list_deliveries("failed", 20)]

    def policy(self, forge: str, repo: str) -> Config | str:
        """``.mlgate.yml`` on the default branch of ``repo`` (never a PR head), or why not."""
        try:
            client = make_forge(forge, self.settings, _installation(self.settings, forge, repo))
            branch = client.default_branch(repo)
            text = client.read_file(repo, CONFIG_FILE, branch)
        except Exception as e:  # the page says what failed; it never fails itself
            return f"cannot read {CONFIG_FILE} of {repo} on {forge}: {self._redact.text(str(e))}"
        if text is None:
            return f"there is no {CONFIG_FILE} on the default branch {branch!r} of {repo}"
        try:
            return cfgmod.parse(text, CONFIG_FILE)
        except ConfigError as e:
            return f"{CONFIG_FILE} on the default branch of {repo} is invalid: {e}"

    def registry(self, cfg: Config) -> Registry | str:
        try:  # the same choice as the bot's handlers: a repository cannot send the bot's credentials elsewhere
            uri = tracking_uri_for(self.settings, cfg)
        except MlgateError as e:
            return str(e)
        if uri is None:
            return (f"the tracking URI of {CONFIG_FILE} ({cfg.tracking_uri}) is a local store the bot cannot read: set "
                    "tracking_uri in bot.yml")
        if uri not in self._registries:
            self._registries[uri] = Registry(uri)
        return self._registries[uri]


def _installation(settings: Any, forge: str, repo: str) -> int | None:
    """The GitHub App installation of ``repo`` when the bot runs as an App without a token
    (``GET /repos/{owner}/{repo}/installation`` with the App's JWT, through PyGithub); None otherwise."""
    if forge != "github" or getattr(settings, "github_token", None) or not getattr(settings, "github_app_id", None):
        return None
    from github import Auth, GithubIntegration  # lazily: the bot extra's

    key = settings.github_private_key.get_secret_value()
    gi = GithubIntegration(auth=Auth.AppAuth(settings.github_app_id, key), base_url=settings.github_api_url)
    owner, name = repo.split("/", 1)
    return gi.get_repo_installation(owner, name).id
