"""A delivery handler for the process tests (``handler: tests.bot.gate_handler:handle``).

Environment:
- ``MLGATE_TEST_RECORD``: file; one line ``<delivery id>`` is appended per *completed* call.
- ``MLGATE_TEST_STARTED``: file; one line ``<delivery id> <attempt>`` is appended when a call starts.
- ``MLGATE_TEST_GATE``: when set, each call waits until this file exists before completing.

A payload with ``"fail": true`` raises an error whose message holds the webhook secret (the
bot must redact it wherever it shows errors).
"""

from __future__ import annotations

import os
import time


def handle(delivery, ctx) -> str:
    started = os.environ.get("MLGATE_TEST_STARTED")
    if started:
        with open(started, "a") as f:
            f.write(f"{delivery.id} {delivery.attempts}\n")
    gate = os.environ.get("MLGATE_TEST_GATE")
    if gate:
        while not os.path.exists(gate):
            time.sleep(0.02)
    if delivery.payload.get("fail"):
        secret = ctx.settings.github_webhook_secret.get_secret_value()
        raise RuntimeError(f"cannot reach the forge with {secret}")
    with open(os.environ["MLGATE_TEST_RECORD"], "a") as f:
        f.write(f"{delivery.id}\n")
    return f"recorded {delivery.id}"
