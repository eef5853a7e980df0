"""``/doctor`` and the bot's start-up checks: the checks of ``mlgate doctor``, from the bot.

``/doctor`` on a pull/merge request replies with the list of :func:`mlgate.flows.doctor.check`
for the repository's ``.mlgate.yml`` on the default branch, as the bot would promote: every
GitOps repository through the forge client of this delivery (the bot writes both modes through
the forge API, :class:`~mlgate.edge.forges.ForgeWriter`), the tracking URI of
:meth:`~mlgate.bot.handlers.common.Job.tracking_uri`, no Argo check (the bot sends its Argo
token only to its allowed servers). Read only; anyone who may comment may ask.

At start-up (:func:`log_startup_checks`, from ``mlgate bot serve``) the bot checks its own
settings: the database, the tracking server of ``bot.yml``, the GitHub token or App and the
GitLab token it holds; each result is one structured log line (``info`` when it passed,
``warning`` otherwise), and the bot serves either way: a remote that is down now may be up by
the first delivery.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mlgate.core import doctor as d
from mlgate.core.commands import Command
from mlgate.core.doctor import Check
from mlgate.core.errors import MlgateError
from mlgate.bot import promotion as promo
from mlgate.bot.handlers.common import CONFIG_FILE, Job
from mlgate.flows import doctor as flow


def on_doctor(job: Job, cmd: Command) -> str:
    """``/doctor``: reply with the checks of the default branch's ``.mlgate.yml`` (no lock, no change)."""
    branch = job.ev.default_branch or job.forge.default_branch(job.ev.repo)
    text = job.forge.read_file(job.ev.repo, CONFIG_FILE, branch)
    if text is None:
        return f"doctor: {job.no_policy(cmd.text, f'there is no `{CONFIG_FILE}` on the default branch `{branch}`')}"
    services = flow.Services(forge_for=lambda _repository, _environ: job.forge, forge_only=True, argo=None,
                             tracking_uri=job.tracking_uri)
    redactor = job.ctx.settings.redactor(os.environ) if hasattr(job.ctx.settings, "redactor") else None
    checks = flow.check(CONFIG_FILE, config_text=text, services=services, redactor=redactor,
                        config_name=f"{CONFIG_FILE} (default branch {branch})")
    verdict = {d.OK: "ready to promote", d.FAIL: "not ready", d.UNKNOWN: "cannot tell"}[d.overall(checks)]
    job.say(promo.reply(f"doctor: {verdict}", d.render_markdown(checks, heading=f"`{cmd.text}`")))
    failed = [c.title for c in checks if c.status == d.FAIL]
    job.audit(command=cmd.text, allowed=True, reasons=failed, outcome=f"doctor: {verdict}")
    return f"doctor: {verdict} ({len(failed)} failed)"


def startup_checks(settings: Any, store: Any, environ: Mapping[str, str] | None = None) -> list[Check]:
    """The bot's own settings, read only: the database (``store.ping``), ``tracking_uri`` (when set),
    GitHub (``GET /app`` with the App's JWT, or ``GET /user`` with the token) and GitLab
    (``GET /user``), each when configured. Secrets are masked by the bot's redactor."""
    env = os.environ if environ is None else environ
    checks = [_database(settings, store), *_tracking(settings)]
    checks += _github(settings) + _gitlab(settings)
    red = settings.redactor(env)
    return [Check(c.id, red.text(c.title), c.status, red.text(c.detail), red.text(c.fix)) for c in checks]


def log_startup_checks(settings: Any, store: Any, log: Any) -> list[Check]:
    """Run :func:`startup_checks` and log one line per check (event ``doctor``), then one line
    ``start-up checks done`` with the count per status (whoever watches the log knows the checks'
    requests are over); never raises."""
    checks: list[Check] = []
    try:
        checks = startup_checks(settings, store)
    except Exception as e:  # a check's bug must not stop the bot: say so, serve anyway
        log.warning("doctor", check="bot", status=d.UNKNOWN, detail=f"{type(e).__name__}: {e}")
    for c in checks:
        (log.info if c.status == d.OK else log.warning)("doctor", check=c.id, title=c.title, status=c.status,
                                                        detail=c.detail, fix=c.fix)
    counts = {s: sum(c.status == s for c in checks) for s in (d.OK, d.FAIL, d.UNKNOWN)}
    log.info("start-up checks done", passed=counts[d.OK], failed=counts[d.FAIL], unknown=counts[d.UNKNOWN])
    return checks


def _status(e: MlgateError) -> str:
    from mlgate.core.errors import Unreachable
    from mlgate.edge.forges.base import ForgeBusy, ForgeError, ForgeUnreachable

    if isinstance(e, (Unreachable, ForgeUnreachable)) or (isinstance(e, ForgeError) and e.status in (401, 403)):
        return d.FAIL
    return d.UNKNOWN if isinstance(e, (ForgeBusy, ForgeError)) or e.exit_code == 3 else d.FAIL


def _database(settings: Any, store: Any) -> Check:
    title = f"database {settings.safe_database_url()} answers"
    try:
        store.ping()
    except Exception as e:  # InfraError from ping, or the driver's own
        return d.fail("bot.database", title, str(e), "check database_url (MLGATE_DATABASE_URL) and the database server")
    return d.ok("bot.database", title)


def _tracking(settings: Any) -> list[Check]:
    uri = getattr(settings, "tracking_uri", None)
    title = "tracking server of bot.yml answers"
    if not uri:
        return [d.ok("bot.tracking", title, "not set: each repository's .mlgate.yml names its own")]
    from mlgate.edge.registry import TrackingProbe

    try:
        return [d.ok("bot.tracking", title, f"{uri}: {TrackingProbe(uri).server_version()}")]
    except MlgateError as e:
        return [Check("bot.tracking", title, _status(e), str(e), "check tracking_uri in bot.yml and the server")]


def _plain(value: Any) -> str | None:
    """A SecretStr's value (or the value itself)."""
    return None if value is None else str(getattr(value, "get_secret_value", lambda: value)())


def _github(settings: Any) -> list[Check]:
    url = settings.github_api_url
    app_id, key, token = settings.github_app_id, _plain(settings.github_private_key), _plain(settings.github_token)
    if not (app_id and key) and not token:
        return []
    title = f"GitHub at {url} accepts the bot's credentials"
    try:
        from mlgate.edge.forges.github import GitHubForge, app_identity

        who = f"GitHub App {app_identity(url, app_id, key)}" if app_id and key else \
            f"token of {GitHubForge(url, token=token, request_interval=0).whoami()}"
    except MlgateError as e:
        return [Check("bot.github", title, _status(e), str(e),
                      "check github_api_url, MLGATE_GITHUB_APP_ID/MLGATE_GITHUB_PRIVATE_KEY or MLGATE_GITHUB_TOKEN")]
    return [d.ok("bot.github", title, who)]


def _gitlab(settings: Any) -> list[Check]:
    token = _plain(settings.gitlab_token)
    if not token:
        return []
    title = f"GitLab at {settings.gitlab_url} accepts the bot's token"
    try:
        from mlgate.edge.forges.gitlab import GitLabForge

        who = GitLabForge(settings.gitlab_url, token=token).whoami()
    except MlgateError as e:
        return [Check("bot.gitlab", title, _status(e), str(e), "check gitlab_url and MLGATE_GITLAB_TOKEN")]
    return [d.ok("bot.gitlab", title, f"token of {who}")]
