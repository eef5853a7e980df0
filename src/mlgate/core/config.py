"""The repository config ``.mlgate.yml``: pydantic models, loading, and located errors.

Pure core: parses text it is handed; the only I/O is :func:`load_file`, a thin
wrapper that reads the file and calls :func:`parse`.

``schemas/mlgate.schema.json`` is generated from :class:`Config` (``mlgate schema``);
``tests/core/test_config.py`` fails when the committed schema drifts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlgate.core.errors import ConfigError, Problem

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

_VALUE_HELP = (
    "Value template; may use {model_uri} (models:/NAME/VERSION), {storage_uri} (the version's "
    "artifact location), {version}, {model}, {run_id}."
)


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


_CHECK_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$"
_QUERY_HELP = (
    "PromQL evaluated as an instant query; {version}, {model} and {environment} are replaced by "
    "the canary's version (the primary's in primary_query), the registered model and the environment. "
    "It must return one number: a scalar or a single series (aggregate with sum/max/avg)."
)


class CanaryCheck(_Model):
    """One live metric check, measured once per ``interval`` while a canary step is live.

    A measurement passes when the canary's value is within ``min``/``max`` and, with
    ``primary_query``, at most ``max_ratio`` times the primary's value. Too few samples makes
    the step wait (neither pass nor fail); ``failure_limit`` consecutive failed measurements
    roll the canary back.
    """

    name: str = Field(pattern=_CHECK_NAME, description="Short name shown in reports and charts, e.g. error_rate.")
    query: str = Field(min_length=1, description=_QUERY_HELP)
    max: float | None = Field(None, description="The canary's value must be at most this.")
    min: float | None = Field(None, description="The canary's value must be at least this.")
    primary_query: str | None = Field(
        None, min_length=1, description="The same measurement for the primary version (needs max_ratio)."
    )
    max_ratio: float | None = Field(
        None, gt=0, description="The canary's value may be at most this multiple of the primary's (e.g. 1.2)."
    )
    min_samples: float = Field(
        0, ge=0,
        description=(
            "Below this many samples the step waits instead of passing. With samples_query, the "
            "query's value (e.g. requests served by the canary); without it, the number of "
            "measurements of this check taken in the current step."
        ),
    )
    samples_query: str | None = Field(
        None, min_length=1, description="PromQL returning the canary's sample count (same placeholders as query)."
    )
    failure_limit: int = Field(
        1, ge=1, description="Consecutive failed measurements of this check that roll the canary back."
    )

    @model_validator(mode="after")
    def _needs_a_threshold(self) -> "CanaryCheck":
        if self.max is None and self.min is None and self.max_ratio is None:
            raise ValueError("a canary check needs at least one of max, min, max_ratio")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if (self.max_ratio is None) != (self.primary_query is None):
            raise ValueError("max_ratio and primary_query go together: the ratio compares the two queries")
        return self


class CanaryAnalysis(_Model):
    """Where and what to measure: a Prometheus server (HTTP API ``/api/v1/query``) and checks."""

    prometheus: str = Field(
        pattern=r"^https?://\S+$", description="Prometheus base URL, e.g. http://prometheus.monitoring:9090"
    )
    token_env: str | None = Field(
        None, description="Environment variable holding a bearer token for Prometheus (none: no auth header)."
    )
    timeout: float = Field(10.0, gt=0, description="Seconds to wait for each query.")
    checks: list[CanaryCheck] = Field(min_length=1, description="Checks; every one must pass to advance a step.")

    @field_validator("checks")
    @classmethod
    def _unique_names(cls, v: list[CanaryCheck]) -> list[CanaryCheck]:
        names = [c.name for c in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"check names must be unique: {dup}")
        return v


class CanaryKServeTarget(_Model):
    """A KServe ``InferenceService`` in Serverless (Knative) mode.

    The canary's model goes to ``spec.predictor.model.storageUri`` and its share of traffic to
    ``spec.predictor.canaryTrafficPercent`` (KServe docs, "Canary Rollout Strategy"; Serverless
    mode only: an InferenceService annotated ``serving.kserve.io/deploymentMode: Standard`` or
    ``RawDeployment`` is refused).
    """

    kind: Literal["kserve"]
    name: str | None = Field(None, description="metadata.name of the InferenceService (needed in multi-document files).")
    value: str = Field("{storage_uri}", description=_VALUE_HELP)


class CanaryWeightedTarget(_Model):
    """A weighted pair of key paths, e.g. the two route weights of an Istio VirtualService or
    two Helm values; the weights always sum to 100.

    ``canary_value`` (optional) is where the canary's model URI goes; ``primary_value``
    (optional) is the primary's: when set, the 100 % step moves the new version to the primary
    and the weights back to primary 100 / canary 0, ready for the next canary.
    """

    kind: Literal["weighted"]
    canary_weight: str = Field(min_length=1, description="Key path of the canary's weight, e.g. spec.http[0].route[1].weight")
    primary_weight: str = Field(min_length=1, description="Key path of the primary's weight, e.g. spec.http[0].route[0].weight")
    canary_value: str | None = Field(None, min_length=1, description="Key path of the canary's model URI (optional).")
    primary_value: str | None = Field(None, min_length=1, description="Key path of the primary's model URI (optional).")
    value: str = Field("{storage_uri}", description=_VALUE_HELP)
    select: str | None = Field(None, description="KIND/NAME of the document holding the weights (multi-document files).")
    value_select: str | None = Field(
        None, description="KIND/NAME of the document holding canary_value/primary_value (default: select)."
    )

    @model_validator(mode="after")
    def _distinct_paths(self) -> "CanaryWeightedTarget":
        if self.canary_weight == self.primary_weight:
            raise ValueError("canary_weight and primary_weight must be different key paths")
        if self.canary_value is not None and self.canary_value == self.primary_value:
            raise ValueError("canary_value and primary_value must be different key paths")
        return self


CanaryTarget = Annotated[Union[CanaryKServeTarget, CanaryWeightedTarget], Field(discriminator="kind")]


class Canary(_Model):
    """Canary rollout of a new model version to this environment, step by step, with live
    metric analysis (see ``docs``/README "Canary"); optional per environment.

    Each step is one commit in the environment's GitOps repository (``gitops`` settings:
    repository, branch, path, mode). When a step is live, mlgate waits ``interval`` seconds,
    measures every check in Prometheus, then advances, waits, holds or rolls back.
    """

    steps: list[int] = Field(
        min_length=1,
        description="Traffic percentages (0-100) of the canary, strictly increasing, ending at 100, e.g. [10, 50, 100].",
    )
    interval: float = Field(gt=0, description="Seconds to observe each step before each measurement.")
    analysis: CanaryAnalysis
    target: CanaryTarget

    @field_validator("steps")
    @classmethod
    def _steps_climb_to_100(cls, v: list[int]) -> list[int]:
        for p in v:
            if not 0 <= p <= 100:
                raise ValueError(f"step {p} is not a percentage between 0 and 100")
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"steps must be strictly increasing, got {v}")
        if v[-1] != 100:
            raise ValueError(f"steps must end at 100 (full traffic), got {v}")
        return v


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


# --------------------------------------------------------------------------- loading


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``.mlgate.yml``, generated from :class:`Config`."""
    schema = Config.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def _position(node: Any, loc: tuple[Any, ...]) -> tuple[int, int]:
    """Best 0-based (line, col) for a pydantic error location inside a ruamel node tree.

    Walks ``loc`` as the tree goes; a mapping key points at the key, a list index
    at the item. Union/discriminator tags in ``loc`` that are not keys are skipped.
    """
    line, col = 0, 0
    if hasattr(node, "lc"):
        line, col = node.lc.line, node.lc.col
    for part in loc:
        lc = getattr(node, "lc", None)
        if isinstance(node, dict) and part in node:
            if lc is not None:
                kl = lc.key(part)
                if kl is not None:
                    line, col = kl
            child = node[part]
            node = child
            continue
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            if lc is not None:
                il = lc.item(part)
                if il is not None:
                    line, col = il
            node = node[part]
            continue
        # a union branch name or a discriminator tag: stay on this node
    return line, col


def _value_position(node: Any, loc: tuple[Any, ...]) -> tuple[int, int] | None:
    """0-based position of the *value* at ``loc`` (for type errors), if it is a mapping value."""
    if not loc:
        return None
    parent = node
    for part in loc[:-1]:
        if isinstance(parent, dict) and part in parent:
            parent = parent[part]
        elif isinstance(parent, list) and isinstance(part, int) and 0 <= part < len(parent):
            parent = parent[part]
    last = loc[-1]
    if isinstance(parent, dict) and last in parent and hasattr(parent, "lc"):
        return parent.lc.value(last)
    return None


def _clean_loc(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drop union-branch and discriminator-tag parts that are not keys of the document."""
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, (dict, list)):
            # not in the document: either a missing/extra key (keep, last) or a branch tag (skip)
            if part == loc[-1]:
                out.append(part)
    return tuple(out)


def _message(err: dict[str, Any], loc: tuple[Any, ...]) -> str:
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r} at {dotted}"
    if kind == "missing":
        return f"missing required key {loc[-1]!r} at {dotted}" if loc else "missing required key"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx") or {}
        return (f"{dotted}: {ctx.get('discriminator', 'kind').strip(chr(39))} must be one of "
                f"{ctx.get('expected_tags', '?')} (got {ctx.get('tag', err.get('input'))!r})")
    if loc and loc[-1] == "max_regression" and kind not in ("value_error",):
        return (f"{dotted}: must be a number (an absolute amount) or a string like '2%' "
                f"(relative to the champion) (got {err.get('input')!r})")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    got = err.get("input")
    if kind not in ("value_error", "assertion_error") and not isinstance(got, (dict, list)):
        return f"{dotted}: {msg} (got {got!r})"
    return f"{dotted}: {msg}"


def parse(text: str, filename: str = ".mlgate.yml") -> Config:
    """Parse and validate ``.mlgate.yml`` text.

    Args:
        text: the file's contents.
        filename: used in error messages only.

    Returns:
        The validated :class:`Config`.

    Raises:
        ConfigError: with one :class:`~mlgate.core.errors.Problem` (``file:line:col: message``,
            1-based) per problem: YAML syntax errors, duplicate keys, unknown keys,
            wrong types, missing keys, invalid values.
    """
    data = load_yaml_mapping(text, filename)
    if data is None:
        raise ConfigError([Problem(filename, 1, 1, "the file is empty; it needs at least 'model:'")])
    try:
        cfg = Config.model_validate(_plain(data))
    except ValidationError as exc:
        problems: list[Problem] = []
        seen: set[tuple[Any, ...]] = set()
        for err in exc.errors(include_url=False):
            loc = _clean_loc(tuple(err["loc"]), data)
            if loc in seen:  # one problem per place: union branches repeat the same loc
                continue
            seen.add(loc)
            problems.append(locate(err, loc, data, filename))
        problems.sort(key=lambda p: (p.line, p.col))
        raise ConfigError(problems) from None
    semantic = semantic_problems(cfg, data, filename)
    if semantic:
        raise ConfigError(sorted(semantic, key=lambda p: (p.line, p.col)))
    return cfg


def load_yaml_mapping(text: str, filename: str) -> Any:
    """Load YAML text with ruamel.yaml round-trip (positions kept) for a user-written file.

    Returns:
        The top-level mapping (a ruamel ``CommentedMap``), or None for an empty document.

    Raises:
        ConfigError: duplicate keys, YAML syntax errors, or a top level that is not a mapping,
            each as ``file:line:col`` (1-based).
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError

    from ruamel.yaml.reader import ReaderError

    try:
        data = YAML(typ="rt").load(text)
    except ReaderError as e:
        line, col = _line_col(text, e.position)
        raise ConfigError([Problem(filename, line, col, f"unacceptable character {e.character!r} (control "
                                   "characters are not allowed in YAML)")]) from None
    except RecursionError:
        raise ConfigError([Problem(filename, 1, 1, "the document is nested too deeply")]) from None
    except DuplicateKeyError as e:
        mark = e.problem_mark
        raise ConfigError([Problem(filename, mark.line + 1, mark.column + 1, f"duplicate key: {e.problem}")]) from None
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError([Problem(filename, line, col, f"YAML syntax error: {e.problem or e.context}")]) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError([Problem(filename, 1, 1, f"the top level must be a mapping, not {type(data).__name__}")])
    return data


def _line_col(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of character offset ``position`` in ``text``."""
    before = text[: max(position, 0)]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


def locate(err: dict[str, Any], loc: tuple[Any, ...], data: Any, filename: str,
           message: Any = None) -> Problem:
    """A :class:`Problem` for one pydantic error at (cleaned) ``loc`` inside ruamel ``data``:
    unknown and missing keys point at the key, wrong values at the value."""
    if err["type"] in ("extra_forbidden", "missing") or not loc:
        line, col = _position(data, loc)
    else:
        pos = _value_position(data, loc)
        line, col = pos if pos is not None else _position(data, loc)
    text = (message or _message)(err, loc)
    return Problem(filename, line + 1, col + 1, text)


TEMPLATE_PLACEHOLDERS = ("model_uri", "storage_uri", "version", "model", "run_id")
_RESERVED_ALIASES = {"challenger": "mlgate validate moves to every version that passes its gates"}


def _at(data: Any, loc: tuple[Any, ...], filename: str, message: str, value: bool = True) -> Problem:
    pos = _value_position(data, loc) if value else None
    line, col = pos if pos is not None else _position(data, loc)
    return Problem(filename, line + 1, col + 1, message)


def _template_problem(template: str) -> str | None:
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        return f"bad value template {template!r}: {e}"
    unknown = [f for f in fields if f not in TEMPLATE_PLACEHOLDERS]
    if unknown:
        known = ", ".join("{" + k + "}" for k in TEMPLATE_PLACEHOLDERS)
        return f"unknown placeholder {{{unknown[0]}}} in {template!r} (known: {known})"
    return None


def _path_problem(path: str) -> str | None:
    from mlgate.core.errors import MlgateError
    from mlgate.core.manifests import parse_path

    try:
        parse_path(path)
    except MlgateError as e:
        return f"bad key path {path!r}: {e}"
    return None


_SELECT = re.compile(r"^[A-Za-z][A-Za-z0-9]*/[A-Za-z0-9][A-Za-z0-9_.:-]*$")


def semantic_problems(cfg: Config, data: Any, filename: str) -> list[Problem]:
    """Whole-config checks with positions: unique environment names, ``requires`` that exist
    and do not loop, one environment per registry alias (and none on reserved aliases), value
    templates with known placeholders, key paths and ``select`` that parse, a training command
    that splits. Pure over the validated config and its ruamel tree."""
    import shlex

    problems: list[Problem] = []
    envs = cfg.environments
    names = [e.name for e in envs]
    seen: dict[str, int] = {}
    for i, e in enumerate(envs):
        if e.name in seen:
            problems.append(_at(data, ("environments", i, "name"), filename,
                                f"environment name {e.name!r} is used twice (first as environments.{seen[e.name]})"))
        else:
            seen[e.name] = i
    aliases: dict[str, int] = {}
    for i, e in enumerate(envs):
        where = ("environments", i, "alias") if e.alias else ("environments", i, "name")
        alias = e.registry_alias
        if alias in _RESERVED_ALIASES:
            problems.append(_at(data, where, filename, f"environment {e.name!r} would hold alias {alias!r}, which "
                                f"{_RESERVED_ALIASES[alias]}; choose another name or alias"))
        elif alias in aliases and envs[aliases[alias]].name != e.name:
            problems.append(_at(data, where, filename, f"environment {e.name!r} holds alias {alias!r} like environment "
                                f"{envs[aliases[alias]].name!r}: each environment needs its own alias"))
        else:
            aliases.setdefault(alias, i)
        if e.requires is not None:
            loc = ("environments", i, "requires")
            if e.requires not in names:
                known = ", ".join(dict.fromkeys(names))
                problems.append(_at(data, loc, filename, f"requires unknown environment {e.requires!r} (known: {known})"))
            else:
                chain, cur = [e.name], e.requires
                while cur is not None and cur not in chain:
                    chain.append(cur)
                    cur = next((x.requires for x in envs if x.name == cur), None)
                if cur is not None:
                    problems.append(_at(data, loc, filename,
                                        f"requires forms a loop ({' -> '.join(chain + [cur])}): no version could ever be promoted"))
        target = e.gitops.target
        tloc = ("environments", i, "gitops", "target")
        msg = _template_problem(target.value)
        if msg:
            problems.append(_at(data, tloc + ("value",), filename, msg))
        for key in ("path", "key"):
            if hasattr(target, key):
                msg = _path_problem(getattr(target, key))
                if msg:
                    problems.append(_at(data, tloc + (key,), filename, msg))
        if getattr(target, "select", None) and not _SELECT.match(target.select):
            problems.append(_at(data, tloc + ("select",), filename,
                                f"select {target.select!r} must be KIND/NAME, e.g. InferenceService/wine"))
        if e.canary is not None:
            ct = getattr(e.canary, "target", None)
            if ct is not None and getattr(ct, "value", None):
                msg = _template_problem(ct.value)
                if msg:
                    problems.append(_at(data, ("environments", i, "canary", "target", "value"), filename, msg))
            for key in ("canary_weight", "primary_weight", "canary_value", "primary_value"):
                if ct is not None and getattr(ct, key, None):
                    msg = _path_problem(getattr(ct, key))
                    if msg:
                        problems.append(_at(data, ("environments", i, "canary", "target", key), filename, msg))
    cmd = cfg.train.command
    if cmd is not None:
        loc = ("train", "command")
        if isinstance(cmd, str):
            try:
                words = shlex.split(cmd)
            except ValueError as e:
                problems.append(_at(data, loc, filename, f"train.command cannot be split like a shell would: {e}"))
                words = ["x"]
        else:
            words = cmd
        if not words or not str(words[0]).strip():
            problems.append(_at(data, loc, filename, "train.command is empty: give the training command, "
                                "e.g. python train.py"))
    return problems


def _plain(node: Any) -> Any:
    """ruamel's round-trip containers → plain dict/list/scalars for pydantic."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def read_user_file(path: str | Path) -> str:
    """The UTF-8 text of a user-written file; ConfigError (``file:1:1``) when it is missing,
    a directory, unreadable or not UTF-8."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), 1, 1, "file not found")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(str(path), 1, 1, "is a directory, not a file")]) from None
    except PermissionError:
        raise ConfigError([Problem(str(path), 1, 1, "permission denied")]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([Problem(str(path), 1, 1, f"not UTF-8 text: {e.reason}")]) from None


def load_file(path: str | Path) -> Config:
    """Read and parse a config file; raises :class:`ConfigError` (also for a missing file)."""
    return parse(read_user_file(path), str(path))
