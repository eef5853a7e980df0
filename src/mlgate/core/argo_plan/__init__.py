"""Pure decisions for Argo Workflows submissions: parameters, names, labels, status, progress.

No network, disk, clock or environment: every function works on the plain data it is handed
(the WorkflowTemplate and Workflow objects as JSON dicts, as the Argo Server REST API returns them).
The edge adapter :mod:`mlgate.edge.argo` fetches those objects, calls these functions and sends what
they decide.

Sources of external behaviour:

- Argo Workflows, "Workflow Variables" and "Parameters" (argo-workflows.readthedocs.io): a
  WorkflowTemplate's ``spec.arguments.parameters[]`` has ``name``, ``value`` (the default when
  submitted), ``default``, ``enum``, ``valueFrom``; ``{{...}}`` in a value is a template expression
  that the controller expands. Some Argo versions reject, at submit time, a parameter that has
  neither ``value`` nor ``valueFrom`` (``spec.arguments.NAME.value is required``), so every
  parameter with a literal default is sent explicitly.
- Kubernetes "Object Names and IDs" and "Labels and Selectors": object names are DNS-1123
  subdomains, namespaces DNS-1123 labels (Argo limits the workflow names it generates to 63
  characters); label values are at most 63 characters of
  ``[A-Za-z0-9._-]``, beginning and ending with a letter or digit.
- Argo's ``WorkflowStatus``/``NodeStatus`` (swagger ``io.argoproj.workflow.v1alpha1.*``): phases
  ``Pending``, ``Running``, ``Succeeded``, ``Skipped``, ``Failed``, ``Error``, ``Omitted``; an empty
  workflow phase means the controller has not picked the workflow up yet.

The package's modules, one job each: ``parameters`` (declared and resolved parameters),
``names`` (checked names, labels, URLs), ``submission`` (:func:`plan_submission`), ``status``
(:func:`parse_status`, :func:`progress_lines`).
"""

from __future__ import annotations

from mlgate.core.argo_plan.names import (
    ANNOTATION_REPO,
    LABEL_COMMIT,
    LABEL_MODEL,
    LABEL_PART_OF,
    LABEL_TEMPLATE,
    check_commit,
    check_config_path,
    check_label_value,
    check_namespace,
    check_object_name,
    check_server_url,
    check_tracking_uri,
    clean_repo_url,
    find_placeholders,
    label_selector,
    workflow_labels,
    workflow_name,
    workflow_url,
)
from mlgate.core.argo_plan.parameters import (
    IDENTITY_PARAMETERS,
    STANDARD_PARAMETERS,
    DeclaredParameter,
    ResolvedParameters,
    command_string,
    declared_parameters,
    parse_parameter_options,
    resolve_parameters,
)
from mlgate.core.argo_plan.status import (
    FAILED_PHASES,
    FINISHED_PHASES,
    NodeInfo,
    WorkflowStatus,
    parse_status,
    progress_lines,
)
from mlgate.core.argo_plan.submission import (
    SubmitPlan,
    plan_submission,
)

__all__ = [
    "STANDARD_PARAMETERS",
    "IDENTITY_PARAMETERS",
    "DeclaredParameter",
    "declared_parameters",
    "ResolvedParameters",
    "resolve_parameters",
    "parse_parameter_options",
    "command_string",
    "LABEL_MODEL",
    "LABEL_COMMIT",
    "LABEL_TEMPLATE",
    "LABEL_PART_OF",
    "ANNOTATION_REPO",
    "check_commit",
    "check_label_value",
    "check_object_name",
    "check_namespace",
    "check_server_url",
    "workflow_name",
    "workflow_labels",
    "label_selector",
    "clean_repo_url",
    "check_tracking_uri",
    "check_config_path",
    "workflow_url",
    "find_placeholders",
    "SubmitPlan",
    "plan_submission",
    "FINISHED_PHASES",
    "FAILED_PHASES",
    "NodeInfo",
    "WorkflowStatus",
    "parse_status",
    "progress_lines",
]
