"""The repository config ``.mlgate.yml``: pydantic models, loading, and located errors.

Pure core: parses text it is handed; the only I/O is :func:`load_file`, a thin
wrapper that reads the file and calls :func:`parse`.

``schemas/mlgate.schema.json`` is generated from :class:`Config` (``mlgate schema``);
``tests/core/test_config.py`` fails when the committed schema drifts.

The package's modules, one job each: ``models`` (pydantic models, JSON Schema), ``located``
(YAML with positions, located problems; also used for ``bot.yml``), ``checks`` (whole-config
checks), ``load`` (:func:`parse`, :func:`load_file`).
"""

from __future__ import annotations

from mlgate.core.config.checks import TEMPLATE_PLACEHOLDERS, semantic_problems
from mlgate.core.config.load import load_file, parse
from mlgate.core.config.located import (
    _clean_loc,
    _message,
    _plain,
    _position,
    _value_position,
    load_yaml_mapping,
    locate,
    read_user_file,
)
from mlgate.core.config.models import (
    ALIAS_PATTERN,
    DEFAULT_TRACKING_URI,
    NAME_PATTERN,
    RELATIVE_AMOUNT,
    SCHEMA_ID,
    Approvals,
    ArgoBackend,
    Canary,
    BlueGreenSlot,
    CanaryAnalysis,
    CanaryBlueGreenTarget,
    CanaryCheck,
    CanaryFailure,
    CanaryHTTPRouteTarget,
    CanaryIstioTarget,
    CanaryKServeTarget,
    CanaryStepSpec,
    CanaryTarget,
    CanaryWeightedTarget,
    Config,
    Environment,
    Evaluation,
    Gate,
    GitOps,
    HelmTarget,
    KServeTarget,
    KeyPathTarget,
    KustomizeImageTarget,
    Promoters,
    Target,
    Train,
    Validate,
    json_schema,
)

__all__ = [
    "SCHEMA_ID",
    "NAME_PATTERN",
    "ALIAS_PATTERN",
    "RELATIVE_AMOUNT",
    "DEFAULT_TRACKING_URI",
    "Gate",
    "Evaluation",
    "Validate",
    "ArgoBackend",
    "Train",
    "KServeTarget",
    "HelmTarget",
    "KustomizeImageTarget",
    "KeyPathTarget",
    "Target",
    "GitOps",
    "Promoters",
    "Approvals",
    "CanaryCheck",
    "CanaryFailure",
    "CanaryHTTPRouteTarget",
    "CanaryIstioTarget",
    "CanaryStepSpec",
    "BlueGreenSlot",
    "CanaryAnalysis",
    "CanaryBlueGreenTarget",
    "CanaryKServeTarget",
    "CanaryWeightedTarget",
    "CanaryTarget",
    "Canary",
    "Environment",
    "Config",
    "json_schema",
    "TEMPLATE_PLACEHOLDERS",
    "semantic_problems",
    "parse",
    "load_file",
    "load_yaml_mapping",
    "locate",
    "read_user_file",
]
