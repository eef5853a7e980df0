"""The plan of one submission: name, labels and parameters of the workflow to create."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlgate.core.argo_plan.names import (
    ANNOTATION_REPO,
    check_commit,
    check_config_path,
    check_tracking_uri,
    clean_repo_url,
    label_selector,
    workflow_labels,
    workflow_name,
)
from mlgate.core.argo_plan.parameters import (
    ResolvedParameters,
    command_string,
    declared_parameters,
    resolve_parameters,
)
from mlgate.core.errors import UsageError


@dataclass(frozen=True)
class SubmitPlan:
    """Everything to send for one submission; built by :func:`plan_submission`.

    ``name`` is deterministic per (template, model, commit); ``labels`` find the workflow again
    (``selector``); ``parameters`` fill every declared parameter.
    """

    name: str
    namespace: str
    template: str
    labels: dict[str, str]
    annotations: dict[str, str]
    selector: str
    parameters: ResolvedParameters


def plan_submission(
    template_object: Mapping[str, Any],
    *,
    template: str,
    namespace: str,
    model: str,
    repo_url: str,
    commit: str,
    command: Sequence[str] | str | None,
    tracking_uri: str,
    gpus: int,
    image: str | None,
    user_parameters: Mapping[str, str],
    config_path: str | None = None,
    retrain: str | None = None,
) -> SubmitPlan:
    """Decide the name, labels and parameters of a workflow that runs ``template`` for a commit.

    Args:
        template_object: the WorkflowTemplate as the server returned it.
        template, namespace: where it lives.
        model: registered model name; commit: full SHA; repo_url: git URL (cleaned, see
            :func:`clean_repo_url`); command: the training command; tracking_uri: MLflow URI
            the pod uses; gpus: count of ``nvidia.com/gpu`` (>= 0); image: container image or None.
        user_parameters: ``train.argo.parameters`` merged with ``-p`` (later wins).
        config_path: ``.mlgate.yml`` relative to the repository root, or None (the template's
            default, ``.mlgate.yml``).
        retrain: the id of the retrain an alert started (label ``mlgate.dev/retrain``, part of the
            name, and the ``retrain-id`` parameter when the template declares it), or None.

    Raises:
        UsageError: see :func:`resolve_parameters`, :func:`check_commit`,
            :func:`clean_repo_url`, :func:`check_tracking_uri`, :func:`check_label_value`,
        :func:`check_config_path`.
    """
    if gpus < 0:
        raise UsageError(f"gpus must be 0 or more (got {gpus})")
    commit = check_commit(commit)
    repo = clean_repo_url(repo_url)
    labels = workflow_labels(template, model, commit, retrain)
    standard: dict[str, str | None] = {
        "image": image,
        "repo": repo,
        "commit": commit,
        "model": model,
        "config": None if config_path is None else check_config_path(config_path),
        "command": command_string(command),
        "tracking-uri": check_tracking_uri(tracking_uri),
        "gpus": str(gpus),
        "retrain-id": retrain,
    }
    params = resolve_parameters(template, declared_parameters(template_object), standard=standard, user=user_parameters)
    return SubmitPlan(
        name=workflow_name(template, model, commit, retrain),
        namespace=namespace,
        template=template,
        labels=labels,
        annotations={ANNOTATION_REPO: repo},
        selector=label_selector(labels),
        parameters=params,
    )
