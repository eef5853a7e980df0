"""Traffic-split routes as canary targets (pure): an Istio ``VirtualService`` (Istio reference,
"Virtual Service": ``spec.http[].route[].weight``, also ``tcp``/``tls``; ``destination.host`` and
``subset``) or a Gateway API ``HTTPRoute`` (``spec.rules[].backendRefs[].weight``, the backend by
``name``). The stable and canary destinations named in the config are found in the manifest and
turned into the key paths of their two weights (a :class:`CanaryWeightedTarget`), so every step is
the same one-commit, two-line weight edit as any weighted target. Every weight of the route must
sum to 100 after the edit: anything else is refused before writing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML

from mlgate.core.config import CanaryHTTPRouteTarget, CanaryIstioTarget, CanaryWeightedTarget
from mlgate.core.errors import ManifestError

RouteTarget = CanaryIstioTarget | CanaryHTTPRouteTarget


def _doc(text: str, kind: str, name: str, filename: str) -> Mapping[str, Any]:
    for d in YAML(typ="safe", pure=True).load_all(text):
        if isinstance(d, dict) and d.get("kind") == kind and (d.get("metadata") or {}).get("name") == name:
            return d
    raise ManifestError(f"{filename}: no {kind} {name!r} in the file")


def _istio_match(dest: Any, want: Any) -> bool:
    if not isinstance(dest, Mapping):
        return False
    return dest.get("host") == want.host and (want.subset is None or dest.get("subset") == want.subset)


def _describe(t: RouteTarget, which: str) -> str:
    if isinstance(t, CanaryIstioTarget):
        d = t.stable if which == "stable" else t.canary
        return f"destination host {d.host!r}" + (f" subset {d.subset!r}" if d.subset else "")
    return f"backend {getattr(t, which)!r}"


def _candidates(doc: Mapping[str, Any], t: RouteTarget) -> list[tuple[str, list[Any], str | None]]:
    """(path of the destination list, the list, the route's name) of every route in the manifest."""
    spec = doc.get("spec") or {}
    out = []
    if isinstance(t, CanaryIstioTarget):
        for section in ("http", "tcp", "tls"):
            for i, r in enumerate(spec.get(section) or []):
                if isinstance(r, Mapping) and isinstance(r.get("route"), list):
                    out.append((f"spec.{section}[{i}].route", r["route"], r.get("name")))
    else:
        for i, r in enumerate(spec.get("rules") or []):
            if isinstance(r, Mapping) and isinstance(r.get("backendRefs"), list):
                out.append((f"spec.rules[{i}].backendRefs", r["backendRefs"], r.get("name")))
    return out


def _find(items: list[Any], t: RouteTarget, which: str) -> int | None:
    for j, item in enumerate(items):
        if not isinstance(item, Mapping):
            continue
        if isinstance(t, CanaryIstioTarget):
            if _istio_match(item.get("destination"), t.stable if which == "stable" else t.canary):
                return j
        elif item.get("name") == getattr(t, which):
            return j
    return None


def as_weighted(text: str, target: RouteTarget, filename: str) -> CanaryWeightedTarget:
    """The weighted target (the two weights' key paths) that ``target`` names in ``text``.

    Raises:
        ManifestError: no such route, a destination missing, both in no single route or in
            several (name the route), a weight missing, or other weights of the route that
            would keep the two from summing to 100 with the rest.
    """
    kind = "VirtualService" if isinstance(target, CanaryIstioTarget) else "HTTPRoute"
    doc = _doc(text, kind, target.name, filename)
    wanted = target.route if isinstance(target, CanaryIstioTarget) else target.rule
    found = []
    for path, items, rname in _candidates(doc, target):
        if wanted is not None and rname != wanted:
            continue
        s, c = _find(items, target, "stable"), _find(items, target, "canary")
        if s is not None and c is not None:
            found.append((path, items, s, c))
    where = f"{kind}/{target.name}"
    if not found:
        raise ManifestError(f"{filename}: {where} has no route with both the stable {_describe(target, 'stable')} and "
                            f"the canary {_describe(target, 'canary')}; add the canary with weight: 0")
    if len(found) > 1:
        raise ManifestError(f"{filename}: {where}: {len(found)} routes name both destinations ("
                            + ", ".join(p for p, *_ in found) + "); set the target's "
                            + ("route" if kind == "VirtualService" else "rule") + " to a route's name")
    path, items, s, c = found[0]
    others = [i for i in range(len(items)) if i not in (s, c)]
    for j in (s, c, *others):
        w = items[j].get("weight") if isinstance(items[j], Mapping) else None
        if isinstance(w, bool) or not isinstance(w, int):
            raise ManifestError(f"{filename}: {where}: {path}[{j}].weight is {w!r}; every destination of a split "
                                "route needs an integer weight")
    rest = sum(items[j]["weight"] for j in others)
    if rest:
        raise ManifestError(f"{filename}: {where}: {path} has other destinations with weight {rest}; the stable and "
                            "canary weights could not sum to 100")
    return CanaryWeightedTarget(kind="weighted", canary_weight=f"{path}[{c}].weight",
                                primary_weight=f"{path}[{s}].weight", select=where)
