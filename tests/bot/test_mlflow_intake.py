"""``POST /webhooks/mlflow`` on a real uvicorn (in-process, no workers): what is stored, what is refused.

Signatures come from the installed MLflow's own signer (mlflow/webhooks/delivery.py), so the bot
accepts exactly what MLflow 3.17 sends. The end-to-end tests with a real ``mlflow server`` are in
tests/e2e/bot/test_registry_webhooks.py.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from mlgate.bot.settings import BotSettings, load_settings
from mlgate.core.errors import ConfigError
from mlgate.edge.db.store import Store
from tests.bot.conftest import SECRET

MLFLOW_SECRET = "mlflow-Zp4!q"


def mlflow_post(bot, payload: dict, *, secret: str = MLFLOW_SECRET, delivery: str | None = None,
                ts: int | None = None) -> httpx.Response:
    body = json.dumps(payload)
    delivery = delivery or str(uuid.uuid4())
    stamp = str(ts if ts is not None else int(time.time()))
    return httpx.post(f"{bot.url}/webhooks/mlflow", content=body.encode(), timeout=10, headers={
        "Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": _generate_hmac_signature(secret, delivery, stamp, body)})


def alias_event(**data) -> dict:
    return {"entity": "model_version_alias", "action": "created", "timestamp": "2027-01-01T00:00:00+00:00",
            "data": {"name": "fraud", "alias": "champion", "version": "3", **data}}


@pytest.fixture
def bot(start_bot, sqlite_url):
    return start_bot(BotSettings(mlflow_webhook_secret=MLFLOW_SECRET, database_url=sqlite_url), Store(sqlite_url),
                     workers=0)


def test_a_signed_delivery_is_stored_with_its_event_and_a_redelivery_is_a_duplicate(bot):
    r = mlflow_post(bot, alias_event(), delivery="m-1")
    assert r.status_code == 202 and r.headers["x-mlgate-status"] == "accepted"
    stored = bot.store.load("m-1")
    assert (stored.forge, stored.event) == ("mlflow", "model_version_alias.created")
    assert stored.payload["data"]["alias"] == "champion"
    assert "x-mlflow-signature" not in stored.headers and stored.headers["x-mlflow-delivery-id"] == "m-1"
    again = mlflow_post(bot, alias_event(), delivery="m-1")
    assert again.status_code == 202 and again.headers["x-mlgate-status"] == "duplicate" and bot.count() == 1


def test_events_mlgate_does_not_use_are_acknowledged_and_not_stored(bot):
    r = mlflow_post(bot, {"entity": "model_version_tag", "action": "deleted",
                          "data": {"name": "f", "version": "1", "key": "k"}})
    assert r.status_code == 202 and r.headers["x-mlgate-status"] == "ignored" and bot.count() == 0
    # an alias deleted is used (protected aliases come back): stored like the others
    r = mlflow_post(bot, {"entity": "model_version_alias", "action": "deleted", "data": {"name": "f", "alias": "a"}})
    assert r.status_code == 202 and r.headers["x-mlgate-status"] == "accepted" and bot.count() == 1


def test_a_signed_body_that_names_no_event_is_400(bot):
    r = mlflow_post(bot, {"data": {}})
    assert r.status_code == 400 and "entity and action" in r.json()["error"] and bot.count() == 0


def test_forge_secrets_do_not_open_the_mlflow_route(start_bot, sqlite_url):
    bot = start_bot(BotSettings(github_webhook_secret=SECRET, database_url=sqlite_url), Store(sqlite_url), workers=0)
    r = mlflow_post(bot, alias_event())
    assert r.status_code == 404 and "mlflow webhooks are not configured" in r.json()["error"] and bot.count() == 0


def test_an_empty_mlflow_secret_is_a_config_error_and_alone_is_enough_to_serve(tmp_path):
    from mlgate.bot.settings import check_servable

    with pytest.raises(ConfigError, match="mlflow_webhook_secret: is empty"):
        load_settings(None, {"MLGATE_MLFLOW_WEBHOOK_SECRET": " "})
    check_servable(load_settings(None, {"MLGATE_MLFLOW_WEBHOOK_SECRET": "s3cret"}))


@pytest.mark.parametrize("stamp", ["\u00b2", "\u00b9\u00b3\u00b2"])
def test_a_superscript_timestamp_is_refused_401_not_a_500(bot, stamp):
    # the digits "²³¹" of Latin-1 passed str.isdigit() and crashed int(): 500 and a traceback in the log
    body = json.dumps(alias_event())
    for signed in (True, False):  # refused after reading the body, and before it (no signature)
        headers = {"Content-Type": "application/json", "X-MLflow-Delivery-Id": "m-sup", "X-MLflow-Timestamp": stamp}
        if signed:
            headers["X-MLflow-Signature"] = _generate_hmac_signature(MLFLOW_SECRET, "m-sup", stamp, body)
        r = httpx.post(f"{bot.url}/webhooks/mlflow", content=body.encode(),
                       headers={k: v.encode("latin-1") for k, v in headers.items()}, timeout=10)
        assert r.status_code == 401 and bot.count() == 0
        assert ("X-MLflow-Timestamp" if signed else "missing X-MLflow-Signature") in r.json()["error"]


def test_intake_metrics_name_the_mlflow_event_from_the_body(bot):
    # MLflow sends no event header: the counter said event="none" for every MLflow delivery
    def count(event: str, outcome: str) -> float:
        text = httpx.get(f"{bot.url}/metrics", timeout=10).text
        line = next((ln for ln in text.splitlines() if ln.startswith("mlgate_bot_deliveries_total{") and 'forge="mlflow"'
                     in ln and f'event="{event}"' in ln and f'outcome="{outcome}"' in ln), None)
        return float(line.rsplit(" ", 1)[1]) if line else 0.0

    before = count("model_version_alias.created", "accepted"), count("model_version_alias.created", "duplicate")
    delivery = str(uuid.uuid4())
    assert mlflow_post(bot, alias_event(), delivery=delivery).headers["x-mlgate-status"] == "accepted"
    assert mlflow_post(bot, alias_event(), delivery=delivery).headers["x-mlgate-status"] == "duplicate"
    assert (count("model_version_alias.created", "accepted"), count("model_version_alias.created", "duplicate")) \
        == (before[0] + 1, before[1] + 1)


def test_concurrent_redeliveries_store_one_delivery(bot):
    # MLflow's urllib3 retries resend a delivery whose first answer was slow: all race the intake at once
    import concurrent.futures

    delivery = str(uuid.uuid4())
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: mlflow_post(bot, alias_event(), delivery=delivery), range(16)))
    statuses = sorted(r.headers["x-mlgate-status"] for r in answers)
    assert statuses == ["accepted"] + ["duplicate"] * 15 and bot.count() == 1
