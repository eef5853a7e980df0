"""Transitional: the names that lived here before issue 9 split the main job into
:mod:`mlgate.flows.project`, ``train``, ``validate``, ``promote`` and ``status``.
Removed once every importer uses the new modules."""

from mlgate.core.promotion import gates_fingerprint  # noqa: F401
from mlgate.edge.registry import VersionInfo
from mlgate.flows.project import Project  # noqa: F401
from mlgate.flows.promote import default_promotion_version  # noqa: F401
from mlgate.flows.validate import pick_version  # noqa: F401


def template_values(info: VersionInfo) -> dict[str, str]:
    """Placeholders for manifest value templates of a registered version."""
    from mlgate.core.promotion import template_values as values

    out = values(info.model, info.version, storage_uri=info.storage_uri or info.source, run_id=info.run_id)
    out["model_uri"] = info.model_uri
    return out
