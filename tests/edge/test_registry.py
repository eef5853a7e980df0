"""Registry adapter: waiting for registration, alias lookups against a real MLflow server."""

import uuid

import pytest

from mlgate.core.errors import InfraError, UsageError
from mlgate.edge.registry import Registry, registration_verdict, resolve_tracking_uri


@pytest.mark.parametrize("status,elapsed,timeout,verdict", [
    ("READY", 0, 10, "ready"),
    ("READY", 99, 10, "ready"),
    ("PENDING_REGISTRATION", 1, 10, "wait"),
    ("PENDING_REGISTRATION", 10, 10, "timeout"),
    ("FAILED_REGISTRATION", 0, 10, "failed"),
    ("SOMETHING_NEW", 0, 10, "wait"),
    ("SOMETHING_NEW", 11, 10, "timeout"),
])
def test_registration_verdict(status, elapsed, timeout, verdict):
    assert registration_verdict(status, elapsed, timeout) == verdict


def test_relative_sqlite_uri_is_anchored_at_the_config_dir(tmp_path):
    uri = resolve_tracking_uri("sqlite:///.mlgate/mlflow.db", tmp_path, environ={})
    assert uri == f"sqlite:///{tmp_path}/.mlgate/mlflow.db"
    assert (tmp_path / ".mlgate").is_dir()
    assert resolve_tracking_uri("sqlite:///x.db", tmp_path, environ={"MLFLOW_TRACKING_URI": "http://h:5000"}) == "http://h:5000"


def _version(reg: Registry, model: str) -> str:
    """Register a version whose source is a plain artifact path (no training needed)."""
    c = reg.client
    c.create_registered_model(model)
    exp = c.create_experiment(f"exp-{model}")
    run = c.create_run(exp)
    c.set_terminated(run.info.run_id)
    mv = c.create_model_version(model, f"{run.info.artifact_uri}/model", run.info.run_id)
    return mv.version


def test_alias_lookups(mlflow_server):
    reg = Registry(mlflow_server)
    model = f"alias-{uuid.uuid4().hex[:8]}"
    assert reg.get_by_alias(model, "champion") is None  # no such model: no champion yet
    v = _version(reg, model)
    assert reg.get_by_alias(model, "champion") is None  # model without the alias
    reg.set_alias(model, "champion", v)
    info = reg.get_by_alias(model, "champion")
    assert info is not None and info.version == v and "champion" in info.aliases
    assert reg.wait_ready(model, v, timeout=5).status == "READY"
    with pytest.raises(UsageError, match="has no version 42"):
        reg.get_version(model, "42")


def test_deleting_the_champion_version_leaves_no_champion_not_a_crash(mlflow_server):
    reg = Registry(mlflow_server)
    model = f"del-{uuid.uuid4().hex[:8]}"
    v = _version(reg, model)
    reg.set_alias(model, "champion", v)
    reg.client.delete_model_version(model, v)
    # MLflow drops the alias with the version: the lookup answers "does not exist"
    assert reg.get_by_alias(model, "champion") is None


def test_unreachable_server_is_an_infra_error_naming_the_uri():
    from tests.conftest import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(InfraError, match=uri):
        Registry(uri, timeout=2).get_by_alias("m", "champion")
