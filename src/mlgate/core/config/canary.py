"""The ``canary:`` section of an environment in ``.mlgate.yml``: the checks and their analysis
(Argo Rollouts' field meanings), the targets a step edits (KServe in both modes, weighted key
paths, Istio and Gateway API routes, blue-green slots) and the steps (part of
``schemas/mlgate.schema.json``, through :mod:`mlgate.core.config.models`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Model(BaseModel):
    # as models._Model: NaN/inf thresholds would make every comparison false and silently pass checks
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


_VALUE_HELP = (
    "Value template; may use {model_uri} (models:/NAME/VERSION), {storage_uri} (the version's "
    "artifact location), {version}, {model}, {run_id}."
)


_CHECK_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$"
_QUERY_HELP = (
    "PromQL evaluated as an instant query; {version}, {model} and {environment} are replaced by "
    "the canary's version (the primary's in primary_query), the registered model and the environment. "
    "It must return one number: a scalar or a single series (aggregate with sum/max/avg)."
)


class CanaryFailure(_Model):
    """The failure condition of a check (Argo Rollouts' ``failureCondition``): a measurement
    beyond any of these fails, whatever the success condition says."""

    max: float | None = Field(None, description="The measurement fails when the canary's value is above this.")
    min: float | None = Field(None, description="The measurement fails when the canary's value is below this.")
    max_ratio: float | None = Field(
        None, gt=0, description="The measurement fails when the canary's value is above this multiple of the primary's."
    )

    @model_validator(mode="after")
    def _needs_a_bound(self) -> "CanaryFailure":
        if self.max is None and self.min is None and self.max_ratio is None:
            raise ValueError("a failure condition needs at least one of max, min, max_ratio")
        return self


class CanaryCheck(_Model):
    """One live metric check, measured once per ``interval`` while a canary step is live.

    Each measurement is judged as Argo Rollouts judges a metric's measurement: *failed* when it
    meets the failure condition (``failure``), *successful* when it meets the success condition
    (``min``/``max`` and, with ``primary_query``, ``max_ratio``), *inconclusive* when both
    conditions are set and it meets neither. With only a success condition, anything else fails;
    with only a failure condition, anything else succeeds. Too few samples makes the step wait
    (for at most ``analysis.max_wait``, then the measurement is inconclusive).

    Limits (Argo Rollouts' field meanings, per step): more than ``failure_limit`` failed
    measurements roll the canary back; more than ``consecutive_error_limit`` query errors in a
    row pause it for a person; ``inconclusive_limit`` inconclusive measurements pause it.
    """

    name: str = Field(pattern=_CHECK_NAME, description="Short name shown in reports and charts, e.g. error_rate.")
    query: str = Field(min_length=1, description=_QUERY_HELP)
    max: float | None = Field(None, description="Success condition: the canary's value is at most this.")
    min: float | None = Field(None, description="Success condition: the canary's value is at least this.")
    primary_query: str | None = Field(
        None, min_length=1, description="The same measurement for the primary version (needs max_ratio)."
    )
    max_ratio: float | None = Field(
        None, gt=0, description="Success condition: the canary's value is at most this multiple of the primary's (e.g. 1.2)."
    )
    failure: CanaryFailure | None = Field(
        None,
        description=(
            "Failure condition (Argo Rollouts' failureCondition). With both conditions set, a measurement "
            "that meets neither is inconclusive."
        ),
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
        0, ge=0,
        description=(
            "Failed measurements of this check allowed in a step (Argo Rollouts' failureLimit): one more, "
            "consecutive or not, rolls the canary back. 0: the first failure rolls back."
        ),
    )
    consecutive_error_limit: int = Field(
        4, ge=0,
        description=(
            "Query errors in a row allowed (Argo Rollouts' consecutiveErrorLimit, default 4): one more pauses "
            "the canary and asks on the PR (Prometheus unreachable is never a reason to advance)."
        ),
    )
    inconclusive_limit: int = Field(
        1, ge=1,
        description="Inconclusive measurements of this check in a step that pause the canary and ask on the PR.",
    )

    @model_validator(mode="after")
    def _needs_a_threshold(self) -> "CanaryCheck":
        if self.max is None and self.min is None and self.max_ratio is None and self.failure is None:
            raise ValueError("a canary check needs at least one of max, min, max_ratio, failure")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        ratio = self.max_ratio is not None or (self.failure is not None and self.failure.max_ratio is not None)
        if ratio != (self.primary_query is not None):
            raise ValueError("max_ratio and primary_query go together: the ratio compares the two queries")
        return self

    @property
    def has_success(self) -> bool:
        """Whether a success condition (min, max or max_ratio) is set."""
        return self.max is not None or self.min is not None or self.max_ratio is not None


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
    max_wait: float = Field(
        1800.0, gt=0,
        description=(
            "Seconds a step may wait for enough samples (min_samples, no data yet); after that each waiting "
            "measurement counts as inconclusive instead of waiting silently."
        ),
    )
    max_hold: float = Field(
        900.0, gt=0,
        description=(
            "Seconds a step may be held because Prometheus cannot be queried; after that the canary pauses as "
            "inconclusive and asks on the PR (the bot exports mlgate_canary_held_seconds)."
        ),
    )

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


class IstioDestination(_Model):
    """A VirtualService route destination: ``destination.host`` and, optionally, ``destination.subset``."""

    host: str = Field(min_length=1, description="destination.host, e.g. reviews or reviews.prod.svc.cluster.local.")
    subset: str | None = Field(None, min_length=1, description="destination.subset (a DestinationRule subset), e.g. v2.")


class CanaryIstioTarget(_Model):
    """An Istio ``VirtualService`` whose route splits traffic by ``weight`` between the stable and
    the canary destination (``spec.http[].route[]``, or ``tcp``/``tls``). Each step sets both
    weights in one commit; every weight of that route must sum to 100 (refused before writing).
    Rollback: canary 0, stable 100. The 100 % step leaves the canary destination at 100."""

    kind: Literal["istio"]
    name: str = Field(min_length=1, description="metadata.name of the VirtualService.")
    stable: IstioDestination = Field(description="The destination serving the current version.")
    canary: IstioDestination = Field(description="The destination serving the new version.")
    route: str | None = Field(None, description="spec.http[].name of the route, when several routes name both.")

    @model_validator(mode="after")
    def _distinct(self) -> "CanaryIstioTarget":
        if self.stable == self.canary:
            raise ValueError("the stable and canary destinations must differ")
        return self


class CanaryHTTPRouteTarget(_Model):
    """A Gateway API ``HTTPRoute`` whose rule splits traffic by ``backendRefs[].weight`` between
    the stable and the canary backend (by name). Same rules as ``kind: istio``."""

    kind: Literal["httproute"]
    name: str = Field(min_length=1, description="metadata.name of the HTTPRoute.")
    stable: str = Field(min_length=1, description="backendRefs[].name of the backend serving the current version.")
    canary: str = Field(min_length=1, description="backendRefs[].name of the backend serving the new version.")
    rule: str | None = Field(None, description="spec.rules[].name of the rule, when several rules name both.")

    @model_validator(mode="after")
    def _distinct(self) -> "CanaryHTTPRouteTarget":
        if self.stable == self.canary:
            raise ValueError("the stable and canary backends must differ")
        return self


class BlueGreenSlot(_Model):
    """One slot of a blue-green pair: where its model URI is written."""

    value: str = Field(min_length=1, description="Key path of the slot's model URI, e.g. blue.modelUri.")
    select: str | None = Field(None, description="KIND/NAME of the document holding it (multi-document files).")


class CanaryBlueGreenTarget(_Model):
    """Two slots and an active pointer (``strategy: blue-green``): the new version is written into
    the idle slot (commit or PR 1), then the pointer is switched to that slot (commit or PR 2, one
    line); rollback switches it back (one line, no rebuild). The pointer holds a slot's name: a
    Helm value such as ``activeSlot``, or a Service selector such as ``spec.selector.slot``."""

    kind: Literal["blue-green"]
    slots: dict[str, BlueGreenSlot] = Field(
        description="Exactly two slots by the name the pointer takes, e.g. {blue: {value: blue.modelUri}, green: ...}."
    )
    active: str = Field(min_length=1, description="Key path of the active pointer, e.g. activeSlot.")
    select: str | None = Field(None, description="KIND/NAME of the document holding the pointer (multi-document files).")
    value: str = Field("{storage_uri}", description=_VALUE_HELP)

    @field_validator("slots")
    @classmethod
    def _two(cls, v: dict[str, BlueGreenSlot]) -> dict[str, BlueGreenSlot]:
        if len(v) != 2:
            raise ValueError(f"blue-green needs exactly two slots, got {len(v)}")
        if len({(s.value, s.select) for s in v.values()}) != 2:
            raise ValueError("the two slots must write different key paths")
        return v


CanaryTarget = Annotated[Union[CanaryKServeTarget, CanaryWeightedTarget, CanaryIstioTarget, CanaryHTTPRouteTarget,
                               CanaryBlueGreenTarget], Field(discriminator="kind")]


class CanaryStepSpec(_Model):
    """A canary step written as an object, to ask a person before it runs."""

    percent: int = Field(ge=0, le=100, description="Traffic percentage (0-100) of the canary at this step.")
    confirm: bool = Field(
        False,
        description=(
            "Ask on the PR before writing this step and wait for /continue by a promoter of the environment "
            "(as Flagger's confirm-promotion webhook is used)."
        ),
    )


class Canary(_Model):
    """Canary rollout of a new model version to this environment, step by step, with live
    metric analysis (see ``docs``/README "Canary"); optional per environment.

    Each step is one commit in the environment's GitOps repository (``gitops`` settings:
    repository, branch, path, mode). When a step is live, mlgate waits ``interval`` seconds,
    measures every check in Prometheus, then advances, waits, holds, pauses or rolls back.
    """

    strategy: Literal["canary", "blue-green"] = Field(
        "canary",
        description=(
            "canary: traffic shifts step by step; blue-green: the idle slot gets the new version (step 1, no "
            "traffic, pre-switch analysis), then the pointer switches (step 2) and the analysis runs for bake seconds."
        ),
    )
    steps: list[Union[int, CanaryStepSpec]] = Field(
        None,  # type: ignore[assignment]  # filled by _strategy_steps: blue-green is always [0, 100]
        min_length=1,
        description=(
            "Traffic percentages (0-100) of the canary, strictly increasing, ending at 100, e.g. [10, 50, 100]; "
            "a step may be {percent: 50, confirm: true} to wait for /continue before it is written. Required for "
            "strategy canary; blue-green's are [0, 100] (write the idle slot, switch the pointer)."
        ),
    )
    bake: float = Field(
        0, ge=0,
        description="blue-green: seconds after the switch during which the analysis keeps running before promotion.",
    )
    interval: float = Field(gt=0, description="Seconds to observe each step before each measurement.")
    merge_timeout: float = Field(
        86400.0, gt=0,
        description=(
            "Seconds a step PR may wait to be merged: then the bot reminds on the source PR; after twice this "
            "long the canary is rolled back to its last safe state, as when the step PR is closed unmerged."
        ),
    )
    analysis: CanaryAnalysis
    target: CanaryTarget

    @model_validator(mode="before")
    @classmethod
    def _strategy_steps(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("strategy") == "blue-green":
            if data.get("steps") not in (None, [0, 100]):
                raise ValueError("strategy blue-green has the steps [0, 100] (idle slot written, pointer switched); "
                                 "leave steps out")
            return {**data, "steps": [0, 100]}
        if data.get("steps") is None:
            raise ValueError("a canary needs steps, e.g. [10, 50, 100]")
        return data

    @model_validator(mode="after")
    def _strategy_target(self) -> "Canary":
        if (self.strategy == "blue-green") != (self.target.kind == "blue-green"):
            raise ValueError("strategy blue-green goes with a target of kind blue-green, and only with it")
        return self

    @field_validator("steps")
    @classmethod
    def _steps_climb_to_100(cls, v: list[Any]) -> list[Any]:
        pcts = [s.percent if isinstance(s, CanaryStepSpec) else s for s in v]
        for p in pcts:
            if not 0 <= p <= 100:
                raise ValueError(f"step {p} is not a percentage between 0 and 100")
        if any(b <= a for a, b in zip(pcts, pcts[1:])):
            raise ValueError(f"steps must be strictly increasing, got {pcts}")
        if pcts[-1] != 100:
            raise ValueError(f"steps must end at 100 (full traffic), got {pcts}")
        return v

    @property
    def percents(self) -> list[int]:
        """Each step's traffic percentage, in order."""
        return [s.percent if isinstance(s, CanaryStepSpec) else s for s in self.steps]

    def confirm(self, index: int) -> bool:
        """Whether step ``index`` (0-based) waits for /continue before it is written."""
        s = self.steps[index] if 0 <= index < len(self.steps) else None
        return isinstance(s, CanaryStepSpec) and s.confirm
