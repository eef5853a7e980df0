"""MLflow webhooks (MLflow 3.3+, SQL-backed tracking servers): register the bot's endpoint.

Thin edge over ``MlflowClient.list_webhooks`` / ``create_webhook`` / ``update_webhook``
(MLflow 3.17 Python API, "Webhooks"). mlflow is imported lazily (the CLI starts fast).
"""

from __future__ import annotations

from dataclasses import dataclass

from mlgate.core.errors import InfraError, UsageError
from mlgate.core.registry_events import EVENTS
from mlgate.core.urls import redact_url

#: The name mlgate's webhook has on the tracking server (how it is found again).
WEBHOOK_NAME = "mlgate"


@dataclass(frozen=True)
class Registered:
    """What :func:`ensure_webhook` did: ``action`` is ``created`` or ``updated``."""

    webhook_id: str
    action: str
    url: str
    events: tuple[str, ...]


def ensure_webhook(tracking_uri: str, url: str, secret: str, *, name: str = WEBHOOK_NAME,
                   events: tuple[str, ...] = tuple(sorted(EVENTS))) -> Registered:
    """Create the bot's webhook on the tracking server, or bring the existing one up to date (idempotent).

    A webhook named ``name`` or delivering to ``url`` is updated (url, events, secret, status
    ACTIVE); else one is created. Running it again changes nothing but the secret it sets again.

    Args:
        tracking_uri: the MLflow tracking server (``http(s)://``; a SQL store also works).
        url: the bot's ``https://HOST/webhooks/mlflow``.
        secret: the HMAC key (the bot's ``MLGATE_MLFLOW_WEBHOOK_SECRET``); never empty.

    Raises:
        UsageError: an empty secret, or MLflow refused the webhook (a file store, an address its
            SSRF rules refuse: set MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS / MLFLOW_WEBHOOK_ALLOWED_SCHEMES on
            the server); InfraError: the server is unreachable.
    """
    if not secret.strip():
        raise UsageError("the webhook secret is empty: set MLGATE_MLFLOW_WEBHOOK_SECRET (the bot refuses unsigned "
                         "MLflow deliveries)")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    shown = redact_url(tracking_uri)
    try:
        found = None
        token = None
        while found is None:
            page = client.list_webhooks(max_results=100, page_token=token)
            found = next((w for w in page if w.name == name or w.url == url), None)
            token = page.token
            if not token:
                break
        if found is not None:
            hook = client.update_webhook(found.webhook_id, name=name, url=url, events=list(events), secret=secret,
                                         status="ACTIVE")
            action = "updated"
        else:
            hook = client.create_webhook(name=name, url=url, events=list(events), secret=secret, status="ACTIVE",
                                         description="mlgate bot: registry-driven promotion and protected aliases")
            action = "created"
    except MlflowException as e:
        code = str(getattr(e, "error_code", ""))
        if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "FEATURE_DISABLED"):
            raise UsageError(f"MLflow at {shown} refused the webhook: {e.message}") from None
        raise InfraError(f"MLflow at {shown} failed to register the webhook: {str(e).splitlines()[0][:300]}") from None
    except (OSError, ConnectionError) as e:
        raise InfraError(f"MLflow at {shown} is unreachable: {e}") from None
    return Registered(hook.webhook_id, action, hook.url, tuple(str(e) for e in hook.events))
