"""The pydantic models of ``.mlgate.yml`` (the source of ``schemas/mlgate.schema.json``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlgate.core.config.canary import (  # noqa: F401  (re-exported: the canary section)
    _VALUE_HELP,
    CanaryFailure,
    CanaryCheck,
    CanaryAnalysis,
    CanaryKServeTarget,
    CanaryWeightedTarget,
    IstioDestination,
    CanaryIstioTarget,
    CanaryHTTPRouteTarget,
    BlueGreenSlot,
    CanaryBlueGreenTarget,
    CanaryTarget,
    CanaryStepSpec,
    Canary,
)
from mlgate.core.config.retrain import Retrain

SCHEMA_ID = "https://mlgate.dev/schemas/mlgate.schema.json"

#: Names a user gives to models and environments: used in branch names, tags and
#: aliases, so a closed form (MLflow aliases allow letters, digits, ``_`` and ``-``).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
ALIAS_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$"
RELATIVE_AMOUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")

DEFAULT_TRACKING_URI = "sqlite:///.mlgate/mlflow.db"


class _Model(BaseModel):
    # NaN/inf thresholds would make every comparison false and silently pass gates.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- gates
class Gate(_Model):
    """One metric gate.

    ``min``/``max`` are absolute thresholds on the candidate's value. ``max_regression``
    compares with the version that holds the ``champion`` alias: a number is an absolute
    amount in the metric's own unit, a string ``"N%"`` is relative (percent 0-100 of the
    champion's value). ``direction`` says which way is better.
    """

    metric: str = Field(min_length=1, description="Name of a metric the run logged (or the evaluator computed).")
    direction: Literal["higher", "lower"] = Field(
        "higher", description="Which way is better: 'higher' (accuracy) or 'lower' (loss, latency)."
    )
    min: float | None = Field(None, description="The candidate must be at least this value.")
    max: float | None = Field(None, description="The candidate must be at most this value.")
    max_regression: float | Annotated[str, Field(pattern=r"^\s*\d+(\.\d+)?\s*%\s*$")] | None = Field(
        None,
        description=(
            "Worst allowed change against the champion in the bad direction: a number is an "
            "absolute amount in the metric's unit, a string like '2%' is relative to the champion's value."
        ),
    )

    @model_validator(mode="after")
    def _needs_a_check(self) -> "Gate":
        if self.min is None and self.max is None and self.max_regression is None:
            raise ValueError("a gate needs at least one of min, max, max_regression")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if isinstance(self.max_regression, (int, float)) and self.max_regression < 0:
            raise ValueError("max_regression must not be negative")
        return self

    def regression_allowance(self) -> tuple[Literal["absolute", "relative"], float] | None:
        """``("absolute", amount)`` or ``("relative", fraction 0-1)``, or None without max_regression."""
        if self.max_regression is None:
            return None
        if isinstance(self.max_regression, str):
            m = RELATIVE_AMOUNT.match(self.max_regression)
            assert m is not None  # the field pattern guarantees it
            return ("relative", float(m.group(1)) / 100.0)
        return ("absolute", float(self.max_regression))


class Evaluation(_Model):
    """Score candidate and champion afresh on the same data with ``mlflow.models.evaluate``.

    ``data`` is either a path to a CSV/Parquet file (relative to the config file) holding
    features and a ``targets`` column, or ``module:function`` importable from the config's
    directory, returning ``(features, targets)``.
    """

    data: str = Field(min_length=1, description="CSV/Parquet path, or 'module:function' returning (X, y).")
    targets: str = Field("target", description="Name of the target column (file data).")
    model_type: Literal["classifier", "regressor"] = Field("classifier", description="MLflow evaluator model type.")


class Validate(_Model):
    gates: list[Gate] = Field(default_factory=list, description="Metric gates; all must pass.")
    evaluation: Evaluation | None = Field(
        None, description="Score candidate and champion on the same dataset before gating."
    )
    registration_timeout: float = Field(
        300.0, gt=0, description="Seconds to wait for a new model version to become READY."
    )


# --------------------------------------------------------------------------- training
class ArgoBackend(_Model):
    """Where heavy training runs: an Argo Server and a WorkflowTemplate (see ``workflows/``)."""

    server: str = Field(description="Argo Server base URL, e.g. https://argo.example.com:2746")
    namespace: str = Field("argo", description="Kubernetes namespace of the workflows.")
    template: str = Field("mlgate-train-gpu", description="WorkflowTemplate name.")
    token_env: str | None = Field(
        "ARGO_TOKEN", description="Environment variable holding the service-account bearer token."
    )
    token_file: str | None = Field(None, description="File holding the bearer token (used when token_env is unset).")
    gpus: int = Field(1, ge=0, description="Number of nvidia.com/gpu to request.")
    image: str | None = Field(None, description="Container image that has mlgate and the training code.")
    parameters: dict[str, str] = Field(default_factory=dict, description="Extra WorkflowTemplate parameters.")
    ui_url: str | None = Field(None, description="Argo UI base URL for links (default: the server URL).")
    verify_tls: bool = Field(True, description="Verify the server's TLS certificate.")


class Train(_Model):
    command: list[str] | str | None = Field(
        None, description="Training command (argv list or a shell-free string split like a shell)."
    )
    backend: Literal["local", "argo"] = Field("local", description="Run training here or on Argo Workflows.")
    argo: ArgoBackend | None = None

    @model_validator(mode="after")
    def _argo_needs_settings(self) -> "Train":
        if self.backend == "argo" and self.argo is None:
            raise ValueError("backend 'argo' needs an 'argo' section (server, namespace, template)")
        return self


# --------------------------------------------------------------------------- GitOps targets



class KServeTarget(_Model):
    """A KServe ``InferenceService``: sets ``spec.predictor.model.storageUri``."""

    kind: Literal["kserve"]
    name: str | None = Field(None, description="metadata.name of the InferenceService (needed in multi-document files).")
    value: str = Field("{storage_uri}", description=_VALUE_HELP)


class HelmTarget(_Model):
    """A Helm values file: sets a dotted key such as ``model.image.tag``."""

    kind: Literal["helm"]
    key: str = Field(min_length=1, description="Dotted key path in the values file, e.g. model.uri")
    value: str = Field("{storage_uri}", description=_VALUE_HELP)
    create: bool = Field(False, description="Create the key when it does not exist.")


class KustomizeImageTarget(_Model):
    """A Kustomize ``images:`` entry, chosen by ``name`` (never by index)."""

    kind: Literal["kustomize-image"]
    image: str = Field(min_length=1, description="The images[].name to edit.")
    field: Literal["newTag", "newName", "digest"] = Field("newTag", description="Which field of the entry to set.")
    value: str = Field("{version}", description=_VALUE_HELP)


class KeyPathTarget(_Model):
    """Any YAML file: a key path with list selectors, e.g. ``spec.containers[name=server].image``."""

    kind: Literal["keypath"]
    path: str = Field(min_length=1, description="Key path; [N] indexes a list, [key=value] selects an item.")
    select: str | None = Field(None, description="KIND/NAME of the document in a multi-document file.")
    value: str = Field(description=_VALUE_HELP)
    create: bool = Field(False, description="Create the last key when it does not exist.")


Target = Annotated[
    Union[KServeTarget, HelmTarget, KustomizeImageTarget, KeyPathTarget], Field(discriminator="kind")
]


class GitOps(_Model):
    repository: str = Field(min_length=1, description="git URL or local path (relative to the config file).")
    branch: str = Field("main", description="Branch that the environment's deployment tool watches.")
    path: str = Field(min_length=1, description="File inside the repository to edit.")
    mode: Literal["push", "pull-request"] = Field(
        "push", description="Push the commit to the branch, or open a promotion pull/merge request."
    )
    target: Target

    @field_validator("path")
    @classmethod
    def _stays_inside(cls, v: str) -> str:
        p = Path(v)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"path {v!r} leaves the repository (absolute or '..')")
        return v


# --------------------------------------------------------------------------- approval policy
class Promoters(_Model):
    """Who may run ``/promote`` (or ``/train``)."""

    min_permission: Literal["read", "triage", "write", "maintain", "admin"] = Field(
        "write", description="GitHub repository permission at least this (GitLab: developer=write, maintainer=maintain, owner=admin)."
    )
    users: list[str] = Field(default_factory=list, description="Named users who may, whatever their permission.")
    teams: list[str] = Field(default_factory=list, description="GitHub teams (org/slug) or GitLab groups whose members may.")


class Approvals(_Model):
    """How many approvals from which reviewers, on the commit being promoted."""

    required: int = Field(1, ge=0, description="Number of approvals needed on the PR's head commit.")
    reviewers: list[str] = Field(
        default_factory=list, description="Users whose approval counts; empty means anyone with write permission."
    )
    teams: list[str] = Field(default_factory=list, description="Teams/groups whose members' approvals count.")
    author_counts: bool = Field(False, description="Whether the PR author's own approval counts.")
    committers_count: bool = Field(False, description="Whether approvals by people who pushed commits to the PR count.")
    keep_on_base_merge: bool = Field(
        False,
        description=(
            "Keep an approval across new head commits whose only change is a merge of the base branch: every "
            "file that differs from the approved commit must carry exactly the base branch's change (checked "
            "through the forge's compare API). Default: any new head commit makes an approval stale."
        ),
    )


class TriggerTag(_Model):
    """A model version tag ``key`` = ``value``."""

    key: str = Field(min_length=1, max_length=250, description="Tag key, e.g. deploy (of mlgate's keys only mlgate.gates).")
    value: str = Field(max_length=5000, description="Tag value, e.g. staging.")

    @field_validator("key")
    @classmethod
    def _not_mlgate_own(cls, v: str) -> str:
        if v.startswith("mlgate.") and v != "mlgate.gates":
            raise ValueError(f"tag key {v!r}: mlgate writes the mlgate.* tags itself; of them only mlgate.gates "
                             "can trigger a promotion")
        return v


class RegistryTrigger(_Model):
    """Which MLflow Model Registry event starts this environment's promotion (the bot's
    ``POST /webhooks/mlflow``): an alias set on a version, or a tag set on it. Exactly one."""

    alias: str | None = Field(None, pattern=ALIAS_PATTERN, description="Alias, e.g. challenger: setting it on a version starts its promotion.")
    tag: TriggerTag | None = Field(None, description="Tag key and value, e.g. {key: deploy, value: staging}.")

    @model_validator(mode="after")
    def _exactly_one(self) -> "RegistryTrigger":
        if (self.alias is None) == (self.tag is None):
            raise ValueError("a trigger needs exactly one of alias, tag")
        return self


class Environment(_Model):
    name: str = Field(pattern=NAME_PATTERN, description="Environment name, e.g. staging, production.")
    alias: str | None = Field(
        None, pattern=ALIAS_PATTERN, description="Registry alias the environment holds (default: its name; 'production' holds 'champion')."
    )
    requires: str | None = Field(None, description="Environment that must hold the version first (e.g. staging).")
    gitops: GitOps
    promoters: Promoters = Field(default_factory=Promoters)
    approvals: Approvals = Field(default_factory=Approvals)
    canary: Canary | None = None
    retrain: Retrain | None = Field(
        None, description="Retrain the model when a matching Alertmanager alert fires (README 'Retrain on alerts')."
    )
    trigger: RegistryTrigger | None = Field(
        None,
        description=(
            "Registry event that starts a promotion to this environment (the bot's MLflow webhook): "
            "{alias: challenger} or {tag: {key: deploy, value: staging}}. The bot checks the version as /promote "
            "does and opens a promotion PR/MR; merging it is the approval."
        ),
    )

    @model_validator(mode="after")
    def _trigger_not_own_alias(self) -> "Environment":
        if self.trigger is not None and self.trigger.alias is not None and self.trigger.alias == self.registry_alias:
            raise ValueError(f"trigger alias {self.trigger.alias!r} is the alias this environment holds: mlgate moves "
                             "it when a promotion lands, so it cannot also start one")
        return self

    @property
    def registry_alias(self) -> str:
        """The alias this environment holds: ``alias``, else ``champion`` for production, else the name."""
        if self.alias:
            return self.alias
        return "champion" if self.name == "production" else self.name


class Config(_Model):
    """``.mlgate.yml``: one registered model, its gates and its environments."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False,
                              title="mlgate repository config (.mlgate.yml)")

    model: str = Field(pattern=NAME_PATTERN, description="Registered model name in the MLflow Model Registry.")
    tracking_uri: str = Field(
        DEFAULT_TRACKING_URI,
        description="MLflow tracking URI; the environment variable MLFLOW_TRACKING_URI overrides it.",
    )
    experiment: str | None = Field(None, description="MLflow experiment name (default: the model name).")
    train: Train = Field(default_factory=Train)
    validate_: Validate = Field(default_factory=Validate, alias="validate")
    environments: list[Environment] = Field(default_factory=list)
    train_permission: Promoters | None = Field(
        None, description="Who may run /train (spend GPU time); default: the first environment's promoters."
    )
    protect_aliases: bool = Field(
        True,
        description=(
            "The aliases the environments hold belong to mlgate: when one is moved by hand to a version git does "
            "not deploy, the bot puts it back and records who moved it. false: only record and report."
        ),
    )

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.model

    def environment(self, name: str) -> Environment:
        """The environment called ``name``; raises :class:`KeyError` naming the known ones."""
        for e in self.environments:
            if e.name == name:
                return e
        known = ", ".join(e.name for e in self.environments) or "none configured"
        raise KeyError(f"unknown environment {name!r} (known: {known})")


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``.mlgate.yml``, generated from :class:`Config`."""
    schema = Config.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
