"""The ``retrain`` policy of an environment in ``.mlgate.yml``: which Alertmanager alerts start a
retrain of the model, how often, on which backend, and what happens to the retrained version.

Read by the bot from the repository's default branch (see README "Retrain on alerts"); the
decision itself is :func:`mlgate.core.alerts.decide`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlgate.core.alerts import parse_matcher


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class AlertRule(_Model):
    """Alerts that start a retrain: this ``alertname`` and every label matcher."""

    alertname: str = Field(min_length=1, description="The alert's alertname label, e.g. ModelDriftHigh.")
    matchers: list[str] = Field(
        default_factory=list,
        description=(
            "Prometheus label matchers the alert must also satisfy, e.g. 'severity=~\"warning|critical\"' "
            "(=, !=, =~, !~; regular expressions are fully anchored; a missing label matches as \"\")."
        ),
    )

    @field_validator("matchers")
    @classmethod
    def _parses(cls, v: list[str]) -> list[str]:
        for m in v:
            parse_matcher(m)  # ValueError → a config error at the matcher's line
        return v


class Retrain(_Model):
    """Retrain the model when a matching alert fires, gate the retrained version against the
    champion, and open a promotion PR for this environment when it passes."""

    alerts: list[AlertRule] = Field(min_length=1, description="Which alerts start a retrain (any entry).")
    cooldown_hours: float = Field(
        24.0, ge=0, description="No second retrain of the model within this many hours of the last one's start."
    )
    backend: Literal["argo", "github", "gitlab"] = Field(
        "argo",
        description=(
            "argo: the WorkflowTemplate of train.argo (as /train); github: workflow_dispatch of `workflow` in "
            "the model repository; gitlab: a pipeline of the model project on `ref` (its .gitlab-ci.yml)."
        ),
    )
    workflow: str | None = Field(
        None, description="backend github: the workflow file name (train.yml) or id to dispatch."
    )
    ref: str | None = Field(None, description="Branch or tag the CI run trains (default: the default branch).")
    inputs: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "backend github: extra workflow_dispatch inputs; gitlab: extra pipeline variables. mlgate adds the "
            "input mlgate_retrain_id (GitHub; the workflow passes it to `mlgate train` as MLGATE_RETRAIN_ID) or the "
            "variable MLGATE_RETRAIN_ID (GitLab); the version is tagged mlgate.retrain_id."
        ),
    )
    evaluation_data: str | None = Field(
        None, min_length=1,
        description=(
            "A fresher dataset to gate the retrained version on: candidate and champion are scored afresh on it "
            "with mlflow.models.evaluate (targets and model_type from validate.evaluation, else 'target' and "
            "'classifier'). A CSV/Parquet URL (https://, s3://...) or an absolute path the bot can read; needs "
            "mlgate[evaluate] where the bot runs. Unset: validate.evaluation, else the runs' logged metrics."
        ),
    )
    timeout_hours: float = Field(
        12.0, gt=0, description="A retrain that has registered no version after this many hours is recorded failed."
    )
    auto_merge: bool = Field(
        False, description="Merge the promotion PR when the gates pass (off: it waits for the environment's approvals)."
    )

    @model_validator(mode="after")
    def _backend_settings(self) -> "Retrain":
        if self.backend == "github" and not self.workflow:
            raise ValueError("backend 'github' needs 'workflow' (the workflow file to dispatch, e.g. train.yml)")
        return self
