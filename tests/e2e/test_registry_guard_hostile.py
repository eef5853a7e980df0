"""Protected aliases against a real ``mlflow server`` (issue 13), the hostile cases: credentials in the
GitOps repository URL never reach the drift tag every registry reader sees, and the bot does not fight
itself (the alias it put back comes back as a webhook: in step, nothing written again); a deleted
alias comes back only where a promotion of mlgate landed."""

from __future__ import annotations

import uuid

import pytest

from mlgate.core import config as cfgmod
from mlgate.edge.registry import Registry
from mlgate.flows.registry_sync import guard_alias

pytestmark = pytest.mark.slow  # a real mlflow server

SECRET = "s3cr3t-Pw-4711"
MANIFEST = "model:\n  uri: models:/{model}/{version}  # managed by mlgate\n"


def world(mlflow_server: str, protect: bool = True):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    model = f"guard-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(model)
    versions = [client.create_model_version(model, source=f"s3://m/{model}/{i}").version for i in (1, 2)]
    cfg = cfgmod.parse(f"""\
model: {model}
protect_aliases: {str(protect).lower()}
environments:
  - name: production
    gitops:
      repository: "https://deployer:{SECRET}@git.example.com/acme/deploy.git"
      path: prod.yaml
      target: {{kind: helm, key: model.uri, value: "{{model_uri}}"}}
""", ".mlgate.yml")
    return client, model, versions, cfg


def test_the_drift_tag_never_holds_the_repository_urls_credentials(mlflow_server):
    client, model, (v1, v2), cfg = world(mlflow_server)
    env = cfg.environment("production")
    reader = lambda repo, branch, path: MANIFEST.format(model=model, version=v1)  # noqa: E731 - git deploys v1
    client.set_registered_model_alias(model, "champion", v2)  # moved by hand
    out = guard_alias(reader, Registry(mlflow_server), cfg, env, cause="alias 'champion' set by hand")
    assert out.state == "put back"
    tag = client.get_model_version(model, v2).tags["mlgate.alias_drift.production"]
    assert "git.example.com/acme/deploy.git" in tag and SECRET not in tag and "deployer:***@" in tag
    assert SECRET not in out.text and SECRET not in str(out.record)
    assert client.get_model_version_by_alias(model, "champion").version == v1
    # MLflow now sends a webhook for the alias the bot set: in step, no second write, no loop
    tags_before = client.get_model_version(model, v1).tags
    again = guard_alias(reader, Registry(mlflow_server), cfg, env, cause="alias 'champion' set on v1")
    assert again.state == "in step" and again.record == {}
    assert client.get_model_version(model, v1).tags == tags_before


def test_a_manifest_no_version_maps_to_leaves_the_alias_and_says_so_without_credentials(mlflow_server):
    client, model, (v1, v2), cfg = world(mlflow_server)
    client.set_registered_model_alias(model, "champion", v2)
    out = guard_alias(lambda *_: MANIFEST.format(model=model, version="99"), Registry(mlflow_server), cfg,
                      cfg.environment("production"), cause="periodic check")
    assert out.state == "undecided" and SECRET not in out.text and SECRET not in str(out.record)
    assert client.get_model_version_by_alias(model, "champion").version == v2  # nothing moved on a guess


@pytest.mark.parametrize("protect", [True, False], ids=["protected", "protect_aliases-false"])
def test_a_deleted_alias_comes_back_on_the_version_mlgate_promoted_that_git_deploys(mlflow_server, protect):
    client, model, (v1, v2), cfg = world(mlflow_server, protect=protect)
    env = cfg.environment("production")
    reader = lambda repo, branch, path: MANIFEST.format(model=model, version=v1)  # noqa: E731 - git deploys v1
    client.set_model_version_tag(model, v1, "mlgate.promoted.production.at", "2027-01-15T08:00:00+00:00")  # landed
    client.set_registered_model_alias(model, "champion", v1)
    client.delete_registered_model_alias(model, "champion")  # by hand, in the MLflow UI
    # the periodic check looks first (two passes in a row before it acts): drift, nothing written
    dry = guard_alias(reader, Registry(mlflow_server), cfg, env, cause="periodic check", dry=True)
    assert dry.state == "drift" and dry.record == {"pair": f"none->{v1}"}
    out = guard_alias(reader, Registry(mlflow_server), cfg, env, cause="alias 'champion' deleted from " + model)
    assert out.record["deployed"] == v1 and out.record["version"] is None and out.record["event"] == "alias drift"
    assert SECRET not in out.text and SECRET not in str(out.record)
    if protect:
        assert out.state == "put back" and out.record["outcome"] == "alias put back"
        assert client.get_model_version_by_alias(model, "champion").version == v1
        assert f"put it back on version {v1}" in out.text
    else:
        assert out.state == "drift reported" and "protect_aliases: false" in out.text
        assert "champion" not in client.get_registered_model(model).aliases
    # no alias tag was written on a version: none held the alias
    assert not any(k.startswith("mlgate.alias_drift") for k in client.get_model_version(model, v2).tags)


def test_an_environment_mlgate_never_promoted_to_gets_no_alias(mlflow_server):
    # git deploys v1, but no promotion of mlgate landed there (no mlgate.promoted.production.at):
    # the alias was never mlgate's to set, so the guard creates none
    client, model, (v1, _v2), cfg = world(mlflow_server)
    reader = lambda repo, branch, path: MANIFEST.format(model=model, version=v1)  # noqa: E731
    out = guard_alias(reader, Registry(mlflow_server), cfg, cfg.environment("production"), cause="periodic check")
    assert out.state == "in step" and "holds no version" in out.text and out.record == {}
    assert "champion" not in client.get_registered_model(model).aliases
