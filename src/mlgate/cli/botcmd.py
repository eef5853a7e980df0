"""``mlgate bot ...`` (serve, deliveries, show, retry, explain, prune) and ``mlgate audit``.

Settings come from ``--config bot.yml`` (or ``MLGATE_BOT_CONFIG``) plus ``MLGATE_*`` environment
variables (see :mod:`mlgate.bot.settings`). Heavy imports (uvicorn, SQLAlchemy, the forges)
happen inside the commands.

Everything these commands print from the database (outcomes, errors, payloads, audit records,
tables and ``--output json`` alike) goes through the bot's one redactor
(:meth:`mlgate.bot.settings.BotSettings.redactor`): rows written before secrets were masked at
write time print masked too.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from mlgate.core.errors import InfraError, UsageError

_config_option = click.option(
    "--config",
    "-c",
    "config",
    type=click.Path(dir_okay=False),
    envvar="MLGATE_BOT_CONFIG",
    default=None,
    help="bot.yml (default: none; environment variables MLGATE_* only).",
)


def _settings(config: str | None):  # -> BotSettings
    from mlgate.bot.settings import load_settings

    return load_settings(config, os.environ)


def _open_store(settings: Any):  # -> Store
    """The store of an existing bot database: read commands never create a database, a folder
    or a table (UsageError, exit 2, when there is none or the URL cannot work)."""
    from sqlalchemy.engine import make_url

    from mlgate.edge.db.store import Store, normalize_url, safe_database_url

    url = normalize_url(settings.database_url)
    try:
        parsed = make_url(url)
    except Exception:
        raise UsageError(f"database_url {safe_database_url(url)!r} is not a valid SQLAlchemy URL") from None
    db = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if db and db != ":memory:" and not db.startswith("file:") and not Path(db).expanduser().is_file():
        raise UsageError(
            f"no bot database at {db} (run from the bot's directory, or set "
            "MLGATE_DATABASE_URL / database_url in --config)"
        )
    return Store(url, create=False)


@click.group("bot")
def bot() -> None:
    """Run and inspect the GitOps bot (webhooks, queue, audit)."""


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"--host {host!r}: {e.strerror}") from None
    family, socktype, proto, _, addr = infos[0]
    sock = socket.socket(family, socktype, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise InfraError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    # listen now: SO_REUSEADDR lets a second socket of this process bind the same address until one
    # listens, and the dashboard's listener would then take the webhook port's connections
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@bot.command("serve")
@_config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 in a container).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free port, logged).")
@click.option("--ui-port", type=click.IntRange(0, 65535), default=None,
              help="Serve the read-only dashboard (/ui) on this port, a listener of its own (default: off).")
@click.option("--ui-host", default="127.0.0.1", show_default=True,
              help="Address of the dashboard; anything but loopback needs MLGATE_UI_TOKEN.")
def serve(config: str | None, host: str, port: int, ui_port: int | None, ui_host: str) -> None:
    """Run the webhook server and its workers until SIGINT/SIGTERM.

    Needs at least one webhook secret (MLGATE_GITHUB_WEBHOOK_SECRET and/or
    MLGATE_GITLAB_WEBHOOK_TOKEN); logs are JSON lines on stdout, secrets redacted.
    With --ui-port, the dashboard is served on a second listener, never on the webhook port.
    """
    import importlib.util

    import structlog

    try:  # the server's libraries come with the extra, not with `pip install mlgate`
        import uvicorn

        from mlgate.bot.app import configure_logging, create_app
    except ModuleNotFoundError as e:
        if (e.name or "mlgate").split(".")[0] == "mlgate":
            raise
        raise UsageError(f"mlgate bot serve needs the {e.name!r} package: pip install 'mlgate[bot]'") from None
    from mlgate.bot.settings import check_servable
    from mlgate.edge.db.store import Store

    settings = _settings(config)
    check_servable(settings)
    if ui_port is not None and ui_port == port != 0:
        raise UsageError(f"--ui-port {ui_port} is the webhook port: the dashboard needs a listener of its own")
    if ui_port is not None:
        _ui_token(settings, ui_host)  # refuse an open dashboard before anything starts
    configure_logging(settings.log_level, settings.secrets(os.environ))
    log = structlog.get_logger("mlgate.bot.serve")
    store = Store(settings.database_url)
    app = create_app(settings, store)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    ucfg = uvicorn.Config(
        app,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        log_config=None,
        access_log=settings.access_log,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=15,
    )
    log.info("listening", host=host, port=bound_port, url=f"http://{host}:{bound_port}")
    _start_doctor(settings, store)
    ui = _start_ui(settings, store, ui_host, ui_port, log) if ui_port is not None else None
    server = uvicorn.Server(ucfg)
    try:
        server.run(sockets=[sock])
    finally:
        if ui is not None:
            ui[0].should_exit = True
            ui[1].join(timeout=10)
    if not server.started:
        raise InfraError("the bot did not start (see the log above)")


def _start_doctor(settings: Any, store: Any) -> None:
    """The start-up checks of the bot's own settings (database, tracking server, forges), in a
    daemon thread so that a slow remote never delays serving; one ``doctor`` log line per check."""
    import threading

    import structlog

    from mlgate.bot.handlers.doctor import log_startup_checks

    threading.Thread(target=log_startup_checks, args=(settings, store, structlog.get_logger("mlgate.bot.doctor")),
                     name="mlgate-doctor", daemon=True).start()


def _ui_token(settings: Any, host: str) -> str | None:
    """``MLGATE_UI_TOKEN``, None without one; UsageError (exit 2) when the dashboard would listen on
    a non-loopback ``host`` without a token."""
    import ipaddress

    token = settings.ui_token.get_secret_value() if settings.ui_token is not None else None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not token and not loopback:
        raise UsageError(f"the dashboard would be open to anyone on {host}: set MLGATE_UI_TOKEN, or --ui-host 127.0.0.1")
    return token


def _start_ui(settings: Any, store: Any, host: str, port: int, log: Any) -> tuple[Any, Any]:
    """Start the dashboard (:mod:`mlgate.bot.ui`) on its own listener, in a thread with its own
    event loop (uvicorn installs signal handlers only on the main thread, so SIGTERM still stops
    the webhook server, which then stops this one). Returns (uvicorn server, thread).

    Raises:
        UsageError: a non-loopback address without MLGATE_UI_TOKEN (exit 2).
    """
    import asyncio
    import threading

    import uvicorn

    from mlgate.bot.ui import create_ui_app, loopback_hosts
    from mlgate.bot.ui.sources import StoreSources

    token = _ui_token(settings, host)
    app = create_ui_app(StoreSources(settings, store), token=token, cache_seconds=settings.ui_cache_seconds,
                        allowed_hosts=None if token else loopback_hosts(host))
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=settings.access_log, lifespan="off",
                                           server_header=False))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), name="mlgate-ui", daemon=True)
    thread.start()
    log.info("dashboard listening", host=host, port=bound, url=f"http://{host}:{bound}/ui", token=bool(token))
    return server, thread


@bot.command("deliveries")
@_config_option
@click.option("--status", type=click.Choice(["queued", "running", "done", "failed"]), default=None, help="Only this status.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000), help="Newest N deliveries.")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
def deliveries(config: str | None, status: str | None, limit: int, output: str) -> None:
    """List stored deliveries, newest first, with their status, attempts and last error."""
    settings = _settings(config)
    redact = settings.redactor(os.environ)
    store = _open_store(settings)
    rows = store.list_deliveries(status, limit)
    if output == "json":
        click.echo(json.dumps(redact.value([r.as_json() for r in rows]), indent=2))
        return
    if not rows:
        click.echo("no deliveries" + (f" with status {status}" if status else ""))
        return
    table = [
        [
            r.id,
            r.forge,
            r.event,
            r.status,
            str(r.attempts),
            r.received_at.strftime("%Y-%m-%d %H:%M:%S"),
            _short(redact.text(r.error if r.status in ("failed", "queued") and r.error else (r.outcome or ""))),
        ]
        for r in rows
    ]
    click.echo(_table(["DELIVERY", "FORGE", "EVENT", "STATUS", "ATTEMPTS", "RECEIVED (UTC)", "OUTCOME / ERROR"], table))


@bot.command("show")
@_config_option
@click.argument("delivery_id")
def show(config: str | None, delivery_id: str) -> None:
    """Print one stored delivery as JSON (forge, event, headers, payload): input for `mlgate bot explain`."""
    settings = _settings(config)
    store = _open_store(settings)
    d = store.load(delivery_id)
    if d is None:
        raise UsageError(f"no delivery with id {delivery_id!r}")
    info = store.get(delivery_id)
    click.echo(
        json.dumps(
            settings.redactor(os.environ).value({
                "id": d.id,
                "forge": d.forge,
                "event": d.event,
                "status": info.status if info else None,
                "received_at": d.received_at.isoformat(),
                "headers": d.headers,
                "payload": d.payload,
            }),
            indent=2,
            ensure_ascii=False,
        )
    )


@bot.command("retry")
@_config_option
@click.argument("delivery_id")
def retry(config: str | None, delivery_id: str) -> None:
    """Queue a failed delivery again (a running bot picks it up at its next poll)."""
    store = _open_store(_settings(config))
    if not store.retry(delivery_id, datetime.now(UTC)):
        info = store.get(delivery_id)
        if info is None:
            raise UsageError(f"no delivery with id {delivery_id!r}")
        raise UsageError(f"delivery {delivery_id} is {info.status}, not failed: only failed deliveries are retried")
    click.echo(f"delivery {delivery_id} queued again")


@bot.command("explain")
@_config_option
@click.argument("delivery_file", metavar="DELIVERY.json", type=click.Path(exists=True, dir_okay=False))
@click.option("--event", default=None, help="Event name (X-GitHub-Event / X-Gitlab-Event) when the file holds only a payload.")
@click.option("--forge", type=click.Choice(["github", "gitlab", "mlflow"]), default=None, help="Forge (default: from the file, else guessed from the payload).")
@click.option("--facts", "facts_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON of reviews, permissions and registry state to run the policy too "
                   "(format: schemas/explain-facts.schema.json).")
@click.option("--record", "record_file", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Read the facts a live run would (read-only forge, registry and bot-database calls; needs --config) "
                   "and write them to this file, for --facts later.")
def explain_cmd(config: str | None, delivery_file: str, event: str | None, forge: str | None, facts_file: str | None,
                record_file: str | None = None) -> None:
    """Say what the bot would do with a saved delivery, and why (no network, no writes).

    DELIVERY.json is a webhook payload, or the output of `mlgate bot show`. The bot's own
    account (bot_login, to ignore its comments) comes from --config / MLGATE_BOT_LOGIN.
    """
    from mlgate.bot.explain import explain, guess_forge
    from mlgate.bot.explain_facts import validate as validate_facts

    doc = _read_json(delivery_file)
    payload = doc
    if isinstance(doc, dict) and "payload" in doc and isinstance(doc["payload"], dict) and ("event" in doc or "forge" in doc):
        payload = doc["payload"]
        event = event or doc.get("event")
        forge = forge or doc.get("forge")
    if not isinstance(payload, dict):
        raise UsageError(f"{delivery_file}: expected a JSON object (a webhook payload)")
    if record_file is not None:
        facts_file = _record_facts(config, doc, payload, event, forge, delivery_file, record_file, facts_file)
    facts = _read_json(facts_file) if facts_file else None
    if facts is not None and not isinstance(facts, dict):
        raise UsageError(f"{facts_file}: expected a JSON object")
    if facts is not None and (forge or guess_forge(payload)) != "mlflow":
        validate_facts(facts, facts_file)  # schemas/explain-facts.schema.json, every problem named in the file
    bot_login = _settings(config).bot_login
    click.echo(explain(payload, event=event, forge=forge, facts=facts, bot_login=bot_login))




@bot.command("register-mlflow-webhook")
@_config_option
@click.option("--url", required=True, help="The bot's MLflow webhook address, e.g. https://mlgate.example.com/webhooks/mlflow.")
@click.option("--tracking-uri", "tracking_uri", default=None,
              help="MLflow tracking server (default: tracking_uri of bot.yml, else $MLFLOW_TRACKING_URI).")
def register_mlflow_webhook(config: str | None, url: str, tracking_uri: str | None) -> None:
    """Create (or update) the MLflow webhook that sends registry events to the bot (idempotent).

    \b
    Events: model_version_alias.created, model_version.created, model_version_tag.set; the
    secret is the bot's MLGATE_MLFLOW_WEBHOOK_SECRET. The tracking server needs a SQL backend;
    for a bot on a private address or plain http, start it with MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true
    and MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https. Exit codes: 0 done, 2 usage, 3 MLflow unreachable.
    """
    from mlgate.edge.mlflow_webhooks import ensure_webhook  # lazily: mlflow is slow to import

    settings = _settings(config)
    uri = tracking_uri or settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise UsageError("no tracking server: --tracking-uri URI, tracking_uri in bot.yml, or MLFLOW_TRACKING_URI")
    if settings.mlflow_webhook_secret is None:
        raise UsageError("MLGATE_MLFLOW_WEBHOOK_SECRET is not set: the bot refuses unsigned MLflow deliveries, so the "
                         "webhook needs the same secret")
    done = ensure_webhook(uri, url, settings.mlflow_webhook_secret.get_secret_value())
    click.echo(f"webhook {done.webhook_id} {done.action}: {done.url} ({', '.join(done.events)})")


def _record_facts(config: str | None, doc: Any, payload: dict[str, Any], event: str | None, forge: str | None,
                  delivery_file: str, record_file: str, facts_file: str | None) -> str:
    """``explain --record``: the live facts of a delivery into ``record_file`` (secrets masked);
    returns the file to explain with."""
    from mlgate.bot.explain import guess_event, guess_forge
    from mlgate.bot.explain_facts import record

    if facts_file is not None:
        raise UsageError("give --facts (replay recorded facts) or --record (record them live), not both")
    forge = forge or guess_forge(payload)
    if forge not in ("github", "gitlab"):
        raise UsageError(f"--record reads a GitHub or GitLab delivery's facts, not a {forge} one")
    settings = _settings(config)
    store = _open_store(settings)
    delivery_id = doc.get("id") if isinstance(doc, dict) and isinstance(doc.get("id"), str) else None
    facts = record(payload, event=event or guess_event(payload, forge), forge=forge, settings=settings, store=store,
                   delivery_id=delivery_id or Path(delivery_file).name)
    text = json.dumps(settings.redactor(os.environ).value(facts), indent=2, ensure_ascii=False) + "\n"
    try:
        Path(record_file).write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {record_file}: {e.strerror or e}") from None
    click.echo(f"recorded the facts of this delivery to {record_file} (replay: --facts {record_file})", err=True)
    return record_file


@bot.command("prune")
@_config_option
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Keep this many days instead of the setting retention_days.")
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True)
def prune_cmd(config: str | None, dry_run: bool, days: float | None, output: str) -> None:
    """Delete finished deliveries older than retention_days (default 30) with their effects,
    expired locks, finished /train records and old small state; audit records are kept.

    The running bot does the same every retention_interval_seconds. Exit 2 when retention is
    disabled (retention_days 0) and no --days is given.
    """
    import time

    from mlgate.edge.db.retention import prune

    settings = _settings(config)
    keep = days if days is not None else settings.retention_days
    if not keep:
        raise UsageError("retention is disabled (retention_days: 0): pass --days N to prune anyway")
    store = _open_store(settings)
    try:
        report = prune(store.engine, time.time(), keep, dry_run=dry_run)
    except Exception as e:
        from mlgate.edge.db.engine import short_error

        raise InfraError(f"database {store.safe_url}: {short_error(e)}") from None
    finally:
        store.close()
    if output == "json":
        click.echo(json.dumps(report.as_json(), indent=2))
        return
    cutoff = datetime.fromtimestamp(report.cutoff, UTC).strftime("%Y-%m-%d %H:%M:%S")
    click.echo(f"{report.summary()} (finished before {cutoff} UTC; audit records are kept)")


def _read_json(path: str) -> Any:
    """The JSON document in ``path``. Raises UsageError (exit 2): unreadable, not JSON, or nested
    deeper than the JSON parser's recursion limit (no webhook payload is)."""
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except RecursionError:
        raise UsageError(f"{path}: JSON nested too deeply to be a webhook payload (about "
                         f"{sys.getrecursionlimit()} levels at most)") from None
    except ValueError as e:
        raise UsageError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}") from None


@click.command("audit")
@_config_option
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="table", show_default=True)
def audit(config: str | None, fmt: str) -> None:
    """Export the bot's audit records (every decision: who, what, when, why), oldest first."""
    settings = _settings(config)
    store = _open_store(settings)
    records = settings.redactor(os.environ).value(store.audit_records())
    if fmt == "json":
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
        return
    if not records:
        click.echo("no audit records")
        return
    columns = ["id", "recorded_at"]
    for r in records:
        for k in r:
            if k not in columns:
                columns.append(k)
    rows = [[_short(_cell(r.get(c))) for c in columns] for r in records]
    click.echo(_table([c.upper() for c in columns], rows))


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return "; ".join(v)
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    bot(sys.argv[1:])
