"""MLflow webhook signature, delivery ids and registry events (mlgate.core.registry_events).

Signatures are made by the installed MLflow's own ``_generate_hmac_signature`` (mlflow/webhooks/delivery.py),
so a change of MLflow's scheme fails here. Standard Webhooks' verification cases (several signatures,
stale and future timestamps) follow standard-webhooks/libraries' test suites.
"""

from __future__ import annotations

import json

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from mlgate.core import config as cfgmod
from mlgate.core.events import Ignored
from mlgate.core.registry_events import (
    RegistryEvent,
    check_mlflow_signature,
    deploys,
    guarded,
    mlflow_delivery_id,
    mlflow_event_name,
    normalize,
    triggered,
)

SECRET = "mlflow-secret-Qq9"
NOW = 1_800_000_000
BODY = json.dumps({"entity": "model_version_alias", "action": "created", "timestamp": "2027-01-15T08:00:00+00:00",
                   "data": {"name": "fraud", "alias": "champion", "version": "3"}})


def headers(body: str = BODY, *, delivery: str = "0b7c6a3e-1c1d-4f4e-9a1b-1b2c3d4e5f60", ts: int = NOW,
            secret: str = SECRET) -> dict[str, str]:
    return {"x-mlflow-delivery-id": delivery, "x-mlflow-timestamp": str(ts),
            "x-mlflow-signature": _generate_hmac_signature(secret, delivery, str(ts), body),
            "content-type": "application/json"}


def check(h: dict[str, str], body: str = BODY, now: float = NOW):
    return check_mlflow_signature(SECRET.encode(), h, body.encode(), now)


def test_mlflows_own_signature_is_accepted_within_five_minutes_either_way():
    assert check(headers()) is None
    assert check(headers(), now=NOW + 300) is None
    assert check(headers(), now=NOW - 300) is None


@pytest.mark.parametrize("now", [NOW + 301, NOW - 301, NOW + 86400])
def test_a_stale_or_future_timestamp_is_refused(now):
    got = check(headers(), now=now)
    assert got is not None and got.status == 401 and "300 s" in got.message


def test_wrong_secret_changed_body_changed_id_or_timestamp_are_refused():
    assert check(headers(secret="other")).status == 401
    assert check(headers(), body=BODY.replace('"3"', '"4"')).status == 401
    h = headers()
    h["x-mlflow-delivery-id"] = "another-id"
    assert check(h).status == 401
    h = headers()
    h["x-mlflow-timestamp"] = str(NOW + 1)
    assert check(h).status == 401


@pytest.mark.parametrize("name,value,expected", [
    ("x-mlflow-signature", None, "missing X-MLflow-Signature"),
    ("x-mlflow-signature", "", "missing X-MLflow-Signature"),
    ("x-mlflow-signature", "v1,not base64!", "does not match"),
    ("x-mlflow-signature", "v2,AAAA", "does not match"),
    ("x-mlflow-timestamp", None, "X-MLflow-Timestamp"),
    ("x-mlflow-timestamp", "soon", "X-MLflow-Timestamp"),
    ("x-mlflow-delivery-id", None, "X-MLflow-Delivery-Id"),
])
def test_missing_or_malformed_headers_are_refused_without_echoing_the_secret(name, value, expected):
    h = headers()
    if value is None:
        del h[name]
    else:
        h[name] = value
    got = check(h)
    assert got is not None and got.status == 401 and expected in got.message
    assert SECRET not in got.message


@pytest.mark.parametrize("stamp", ["\u00b2", "\u00b9\u00b3", "1e9", " ", "-1", "+1800000000", "1800000000.5",
                                   "9" * 13, "0x6b49d200"])
def test_a_timestamp_that_is_not_ascii_unix_seconds_is_a_401_not_a_crash(stamp):
    # "²" passed str.isdigit() and then int() raised: the bot answered 500 to an unauthenticated request
    h = headers()
    h["x-mlflow-timestamp"] = stamp
    got = check(h)
    assert got is not None and got.status == 401 and "X-MLflow-Timestamp" in got.message


def test_one_matching_signature_among_several_is_enough():
    h = headers()
    h["x-mlflow-signature"] = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " + h["x-mlflow-signature"]
    assert check(h) is None


def test_an_empty_secret_is_a_programming_error():
    with pytest.raises(ValueError):
        check_mlflow_signature(b"", headers(), BODY.encode(), NOW)


def test_delivery_id_and_event_name():
    assert mlflow_delivery_id(headers()) == "0b7c6a3e-1c1d-4f4e-9a1b-1b2c3d4e5f60"
    assert mlflow_delivery_id({}).status == 400
    assert mlflow_delivery_id({"x-mlflow-delivery-id": "../x"}).status == 400
    assert mlflow_event_name(json.loads(BODY)) == "model_version_alias.created"
    assert mlflow_event_name({"entity": "model_version"}) is None


def test_normalize_the_four_events_and_drop_the_rest():
    alias = normalize("model_version_alias.created", json.loads(BODY))
    assert alias == RegistryEvent("model_version_alias.created", "fraud", "3", "2027-01-15T08:00:00+00:00",
                                  alias="champion")
    tag = normalize("model_version_tag.set", {"data": {"name": "fraud", "version": "3", "key": "deploy",
                                                       "value": "staging"}})
    assert (tag.key, tag.value) == ("deploy", "staging")
    created = normalize("model_version.created", {"data": {"name": "fraud", "version": "4", "tags": {"deploy": "x"}}})
    assert created.tags == {"deploy": "x"}
    # a deleted alias (MLflow's own example payload: name and alias, no version)
    from mlflow.webhooks.types import ModelVersionAliasDeletedPayload

    gone = normalize("model_version_alias.deleted", {"data": ModelVersionAliasDeletedPayload.example(),
                                                     "timestamp": "2027-01-15T08:00:00+00:00"})
    assert gone == RegistryEvent("model_version_alias.deleted", "example_model", "", "2027-01-15T08:00:00+00:00",
                                 alias="example_alias")
    assert gone.describe() == "alias 'example_alias' deleted from example_model at 2027-01-15T08:00:00+00:00"
    assert isinstance(normalize("model_version_alias.deleted", {"data": {}}), Ignored)
    assert isinstance(normalize("registered_model.created", {"data": {"name": "f"}}), Ignored)
    mine = normalize("model_version_tag.set", {"data": {"name": "f", "version": "1", "key": "mlgate.refused.prod",
                                                        "value": "x"}})
    assert isinstance(mine, Ignored) and "written by mlgate" in mine.reason
    gates = normalize("model_version_tag.set", {"data": {"name": "f", "version": "1", "key": "mlgate.gates",
                                                         "value": "passed"}})
    assert isinstance(gates, RegistryEvent)
    for version in ("3/../../x", "3\n\n[x](javascript:alert(1))", "latest", "-1", "\u00b3", "9" * 19):
        hostile = normalize("model_version_alias.created", {"data": {"name": "f", "version": version, "alias": "a"}})
        assert isinstance(hostile, Ignored) and "is not a version number" in hostile.reason
    assert normalize("model_version.created", {"data": {"name": "f", "version": 12}}).version == "12"
    bad = normalize("model_version_alias.created", {"data": {"name": "f", "version": 3, "alias": None}})
    assert isinstance(bad, Ignored) and bad.reason.startswith("malformed payload: data.alias")


CONFIG = """model: fraud
environments:
  - name: staging
    trigger: {alias: challenger}
    gitops: {repository: acme/deploy, path: staging.yaml, target: {kind: helm, key: model.uri, value: "{model_uri}"}}
  - name: canary-env
    trigger: {tag: {key: deploy, value: canary-env}}
    gitops: {repository: acme/deploy, path: c.yaml, target: {kind: helm, key: model.uri}}
  - name: production
    requires: staging
    gitops: {repository: acme/deploy, path: production.yaml, target: {kind: helm, key: model.uri}}
"""


def test_triggers_and_guarded_aliases():
    cfg = cfgmod.parse(CONFIG, ".mlgate.yml")
    ev = lambda **kw: RegistryEvent(kw.pop("event", "model_version_alias.created"), "fraud", "3", **kw)  # noqa: E731
    assert [e.name for e in triggered(cfg, ev(alias="challenger"))] == ["staging"]
    assert triggered(cfg, ev(alias="champion")) == []
    assert triggered(cfg, ev(event="model_version_alias.deleted", alias="challenger")) == []  # deleting is no trigger
    assert [e.name for e in triggered(cfg, ev(event="model_version_tag.set", key="deploy", value="canary-env"))] == ["canary-env"]
    assert triggered(cfg, ev(event="model_version_tag.set", key="deploy", value="staging")) == []
    assert [e.name for e in triggered(cfg, ev(event="model_version.created", tags={"deploy": "canary-env"}))] == ["canary-env"]
    assert guarded(cfg, "champion").name == "production"
    assert guarded(cfg, "staging").name == "staging"
    assert guarded(cfg, "challenger") is None


@pytest.mark.parametrize("text,problem", [
    ("trigger: {alias: staging}", "the alias this environment holds"),
    ("trigger: {}", "exactly one of alias, tag"),
    ("trigger: {alias: a, tag: {key: k, value: v}}", "exactly one of alias, tag"),
    ("trigger: {tag: {key: mlgate.refused.x, value: v}}", "only mlgate.gates"),
])
def test_invalid_triggers_are_config_errors(text, problem):
    from mlgate.core.errors import ConfigError

    yml = f"model: m\nenvironments:\n  - name: staging\n    {text}\n    gitops: {{repository: a/b, path: x.yaml, target: {{kind: kserve}}}}\n"
    with pytest.raises(ConfigError, match=problem):
        cfgmod.parse(yml, ".mlgate.yml")


def test_a_manifest_maps_back_to_the_version_through_the_value_template():
    cfg = cfgmod.parse(CONFIG, ".mlgate.yml")
    env = cfg.environment("staging")
    values = lambda v: {"model_uri": f"models:/fraud/{v}", "storage_uri": f"s3://b/{v}", "version": v,  # noqa: E731
                        "model": "fraud", "run_id": ""}
    text = "model:\n  uri: models:/fraud/3  # managed by mlgate\n"
    assert deploys(text, env, values("3"))
    assert not deploys(text, env, values("4"))
    assert not deploys("other: 1\n", env, values("3"))  # the target is missing: no version


@pytest.mark.parametrize("environ,expected", [
    ({"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/fraud",
      "GITHUB_RUN_ID": "5", "GITHUB_RUN_ATTEMPT": "2"}, ("github", "acme/fraud")),
    ({"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://ghe.example.com", "GITHUB_REPOSITORY": "ml/x.y",
      "GITHUB_RUN_ID": "5"}, ("github", "ml/x.y")),
    ({"GITLAB_CI": "true", "CI_JOB_URL": "https://gitlab.example.com/grp/sub/fraud/-/jobs/77"}, ("gitlab", "grp/sub/fraud")),
    ({"GITLAB_CI": "true"}, None),
    ({}, None),
])
def test_mlgate_train_names_the_repository_that_built_a_version(environ, expected):
    """The repository read back from the CI job URL (tags mlgate.source_forge / mlgate.source_repo)."""
    from mlgate.core.ci import ci_context, source_repository

    assert source_repository(ci_context(environ)) == expected
