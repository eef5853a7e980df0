"""core.redact: configured secrets (and their echoed forms) and well-known token shapes become ***."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlgate.core.redact import MASK, SHAPES_ONLY, Redactor

GH_TOKEN = "ghp_" + "A1b2C3d4E5" * 4          # GitHub classic PAT shape: ghp_ + 36+ base62
FINE = "github_pat_" + "11ABCDEFG0" * 3 + "_xyz"  # fine-grained PAT
GL_TOKEN = "glpat-" + "x1Y2z3W4v5U6t7S8"      # GitLab personal access token
WEBHOOK = "gh-secret-Zq8!x/+="


@pytest.fixture(scope="module")
def pem() -> str:
    from tests.fakes.github_server import app_keypair

    return app_keypair()[0]


# (text, what must not survive) for secrets the redactor was NOT told about: shapes only
SHAPES = [
    (f"GitHub answered 403: bad token {GH_TOKEN}", GH_TOKEN),
    (f"token gho_{'a' * 36} expired", "gho_" + "a" * 36),
    (f"installation token ghs_{'Z9' * 18}", "ghs_" + "Z9" * 18),
    (f"refresh ghr_{'q' * 40}", "ghr_" + "q" * 40),
    (f"user-to-server ghu_{'b' * 36}", "ghu_" + "b" * 36),
    (f"fine-grained {FINE}.", FINE),
    (f"GitLab said 401 for {GL_TOKEN}", GL_TOKEN),
    ("deploy token gldt-abcdefghijklmnopqrst", "gldt-abcdefghijklmnopqrst"),
    ("runner glrt-ABCDEFGHIJKLMNOPQRST12", "glrt-ABCDEFGHIJKLMNOPQRST12"),
    ("Authorization: token s3cr3t-value-1234", "s3cr3t-value-1234"),
    ("authorization: Bearer abc.def.ghi-jkl", "abc.def.ghi-jkl"),
    ('{"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}', "dXNlcjpwYXNzd29yZA=="),
    ("PRIVATE-TOKEN: my-gitlab-token-99", "my-gitlab-token-99"),
    ("proxy echoed Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMifQ.c2lnbmF0dXJl", "eyJpc3MiOiIxMjMifQ"),
    ("jwt eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMifQ.c2lnbmF0dXJl in body", "c2lnbmF0dXJl"),
    ("clone https://x-access-token:ghs_short@github.com/a/b.git failed", "ghs_short"),
    ("postgresql://bot:hunter2@db:5432/bot refused", "hunter2"),
    ("GET /api/v4/projects?private_token=tok-123456 401", "tok-123456"),
    ("https://api.example/x?access_token=abcdef&x=1", "abcdef"),
]


@pytest.mark.parametrize(("text", "secret"), SHAPES)
def test_well_known_shapes_are_masked_without_being_configured(text: str, secret: str) -> None:
    out = SHAPES_ONLY.text(text)
    assert secret not in out
    assert MASK in out


def test_plain_text_is_left_alone() -> None:
    for text in ("promote: opened https://github.com/acme/deploy/pull/3",
                 "the token expired; ask an admin", "authorization failed for carol",
                 "GitHub answered 422: Validation Failed", "ghp_ short", ""):
        assert SHAPES_ONLY.text(text) == text


def test_configured_secrets_and_their_echoed_forms(pem: str) -> None:
    r = Redactor([WEBHOOK, "glpat-configured0000000", pem, None, ""])
    for form in (WEBHOOK, quote(WEBHOOK, safe=""), json.dumps(WEBHOOK)[1:-1]):
        assert form not in r.text(f"echo: {form} end")
    body = [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
    # every line of the PEM on its own, the whole PEM, the PEM JSON-escaped, the base64 body on one line
    for ln in body:
        assert ln not in r.text(f"line: {ln}")
    assert not any(ln in r.text(pem) for ln in body)
    escaped = r.text(json.dumps({"key": pem}))
    assert not any(ln in escaped for ln in body)
    assert "".join(body) not in r.text("joined " + "".join(body))


def test_a_cut_pem_block_is_masked_to_the_end(pem: str) -> None:
    cut = "GitHub Enterprise echoed the request: " + pem[: len(pem) // 2]
    out = SHAPES_ONLY.text(cut)
    assert "BEGIN PRIVATE KEY" in out and pem.splitlines()[1] not in out


def test_short_configured_secrets_are_not_looked_for() -> None:
    assert Redactor(["abc"]).text("abcabc") == "abcabc"


def test_value_redacts_nested_json_like_values_and_keys() -> None:
    r = Redactor([WEBHOOK])
    rec = {"reasons": [f"GitHub answered 403: {GH_TOKEN}"], WEBHOOK: 1, "n": 2, "ok": True, "x": None,
           "nested": {"t": (WEBHOOK, 3.5)}}
    out = r.value(rec)
    text = json.dumps(out)
    assert GH_TOKEN not in text and WEBHOOK not in text
    assert out["n"] == 2 and out["ok"] is True and out["x"] is None and out["nested"]["t"][1] == 3.5


@settings(max_examples=200, deadline=None)
@given(prefix=st.text(max_size=40), suffix=st.text(max_size=40))
def test_a_configured_secret_never_survives_any_surrounding_text(prefix: str, suffix: str) -> None:
    r = Redactor([WEBHOOK, GH_TOKEN])
    out = r.text(prefix + WEBHOOK + suffix + GH_TOKEN)
    assert WEBHOOK not in out and GH_TOKEN not in out


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_redaction_is_idempotent(text: str) -> None:
    r = Redactor([WEBHOOK])
    once = r.text(text)
    assert r.text(once) == once
