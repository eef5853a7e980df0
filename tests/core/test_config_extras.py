"""``mlgate config extras``' decision: which extras of mlgate a .mlgate.yml needs."""

from __future__ import annotations

import pytest

from mlgate.core.config import parse
from mlgate.core.config.extras import needed_extras, store_needs_local

BASE = "model: m\n"
EVALUATION = "validate:\n  evaluation:\n    data: data:rows\n    model_type: classifier\n"


@pytest.mark.parametrize(("uri", "local"), [
    ("http://127.0.0.1:5000", False),
    ("https://mlflow.example.com/", False),
    ("databricks", False),
    ("databricks://profile", False),
    ("databricks-uc", False),
    ("sqlite:///.mlgate/mlflow.db", True),
    ("sqlite:////abs/mlflow.db", True),
    ("postgresql://u@db/mlflow", True),
    ("postgresql+psycopg://u@db/mlflow", True),
    ("mysql+pymysql://u@db/mlflow", True),
    ("file:///tmp/mlruns", True),
    ("./mlruns", True),
    ("mlruns", True),
    ("C:\\mlruns", True),
])
def test_which_stores_run_in_process(uri: str, local: bool) -> None:
    assert store_needs_local(uri) is local


@pytest.mark.parametrize(("text", "env", "want"), [
    # the default tracking_uri is the embedded SQLite store
    (BASE, None, ("local",)),
    (BASE, "", ("local",)),
    # a tracking server in the job's environment overrides it: the base install is enough
    (BASE, "http://mlflow:5000", ()),
    (BASE + "tracking_uri: https://mlflow.example.com\n", None, ()),
    (BASE + "tracking_uri: https://mlflow.example.com\n", "sqlite:///x.db", ("local",)),
    (BASE + "tracking_uri: https://mlflow.example.com\n" + EVALUATION, None, ("evaluate",)),
    (BASE + EVALUATION, None, ("local", "evaluate")),
    (BASE + "tracking_uri: databricks\n", "  ", ()),
])
def test_needed_extras(text: str, env: str | None, want: tuple[str, ...]) -> None:
    assert needed_extras(parse(text, ".mlgate.yml"), env) == want
