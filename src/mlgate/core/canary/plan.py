"""Canary manifest planning: the minimal edits of the GitOps manifest for a step or the
rollback (KServe ``canaryTrafficPercent`` or a router's weights), and their commit message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from mlgate.core.promotion import CanaryStep, Promotion, Trigger
from mlgate.core.canary import bluegreen, kserve, routes
from mlgate.core.canary.kserve import STANDARD_MODES
from mlgate.core.canary.records import CanaryRecord, CanarySettings
from mlgate.core.config import CanaryBlueGreenTarget, CanaryHTTPRouteTarget, CanaryIstioTarget, CanaryKServeTarget, CanaryWeightedTarget
from mlgate.core.errors import ManifestError, Refused
from mlgate.core.manifests import render_value, set_value

KSERVE_URI = "spec.predictor.model.storageUri"
KSERVE_PERCENT = "spec.predictor.canaryTrafficPercent"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
#: KServe deployment modes with revision-based canary traffic (Knative); "Knative" is the
#: name KServe 0.16 gives the former "Serverless" mode.
SERVERLESS_MODES = frozenset({"serverless", "knative"})


def _load_docs(text: str, filename: str) -> list[Any]:
    try:
        return [d for d in YAML(typ="safe", pure=True).load_all(text)]
    except YAMLError as e:
        raise ManifestError(f"{filename}: not valid YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def _kserve_doc(text: str, target: CanaryKServeTarget, filename: str) -> tuple[str, dict[str, Any]]:
    """(``InferenceService/<name>`` select string, the loaded document) of the target."""
    docs = [d for d in _load_docs(text, filename) if isinstance(d, dict) and d.get("kind") == "InferenceService"]
    if target.name is not None:
        docs = [d for d in docs if isinstance(d.get("metadata"), dict) and d["metadata"].get("name") == target.name]
    want = f"InferenceService {target.name!r}" if target.name else "an InferenceService"
    if not docs:
        raise ManifestError(f"{filename}: no {want} in the file (canary target kind: kserve)")
    if len(docs) > 1:
        names = ", ".join(str((d.get("metadata") or {}).get("name")) for d in docs)
        raise ManifestError(f"{filename}: {len(docs)} InferenceServices ({names}); set canary.target.name to choose one")
    doc = docs[0]
    name = (doc.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{filename}: the InferenceService has no metadata.name")
    return f"InferenceService/{name}", doc


def kserve_mode(doc: Mapping[str, Any]) -> str:
    """``serverless`` (Knative: ``canaryTrafficPercent``), ``standard`` (``spec.canary[]``, KServe
    0.20) or the annotation's other value, lower-cased, from ``serving.kserve.io/deploymentMode``.
    Without the annotation the cluster's default mode applies, taken to be Serverless."""
    meta = doc.get("metadata") or {}
    ann = meta.get("annotations") or {}
    mode = ann.get(MODE_ANNOTATION) if isinstance(ann, Mapping) else None
    if mode is None or str(mode).strip().lower() in SERVERLESS_MODES:
        return "serverless"
    if str(mode).strip().lower() in STANDARD_MODES:
        return "standard"
    return str(mode).strip().lower()


def kserve_mode_problem(doc: Mapping[str, Any], filename: str) -> str | None:
    """Why KServe cannot canary this InferenceService (its deployment mode), or None.

    Serverless (Knative) mode splits traffic between revisions with ``canaryTrafficPercent``;
    Standard (formerly RawDeployment) mode has ``spec.canary[]`` entries since KServe 0.20
    (:mod:`mlgate.core.canary.kserve`). ModelMesh has neither.
    """
    mode = kserve_mode(doc)
    if mode in ("serverless", "standard"):
        return None
    meta = doc.get("metadata") or {}
    return (f"{filename}: InferenceService/{meta.get('name')} is annotated {MODE_ANNOTATION}: "
            f"{(meta.get('annotations') or {}).get(MODE_ANNOTATION)}; that mode has no canary traffic split "
            "(KServe canaries need the Serverless/Knative mode's canaryTrafficPercent or the Standard mode's "
            "spec.canary). Use a canary target of kind 'weighted' on your router's weights")


def _set(text: str, path: str, value: str, *, select: str | None, filename: str, create: bool = False) -> str:
    """Set one value; a key created for a whole number is written as a plain integer.

    :func:`mlgate.core.manifests.set_value` creates missing keys as strings (``"10"``), but
    ``canaryTrafficPercent`` is an integer field of the InferenceService CRD. The created
    line's quoted number is unquoted here, then checked: the result must load as that integer
    and differ from the created text on that one line only.
    """
    edit = set_value(text, path, value, select=select, create=create, filename=filename)
    if not (create and edit.changed and edit.old is None and value.isascii() and value.isdigit()):
        return edit.text
    lines = edit.text.splitlines(keepends=True)
    line = lines[edit.line - 1]
    for quoted in (f'"{value}"', f"'{value}'"):
        at = line.rfind(quoted)
        if at >= 0:
            lines[edit.line - 1] = line[:at] + value + line[at + len(quoted):]
            break
    else:
        return edit.text
    fixed = "".join(lines)
    check = set_value(fixed, path, value, select=select, filename=filename)
    if check.changed or not isinstance(check.old, int) or isinstance(check.old, bool) or check.old != int(value):
        raise ManifestError(f"{filename}:{edit.line}: {path}: could not write {value} as a number; edit it by hand")
    return fixed


def _read(text: str, path: str, *, select: str | None, filename: str, create: bool = False) -> object:
    """The current value at ``path`` (None when missing and ``create``), via a no-write probe edit."""
    return set_value(text, path, "0", select=select, create=create, filename=filename).old


def _edits(settings: CanarySettings, percent: int, values: Mapping[str, str], *, final: bool,
           text: str, filename: str) -> list[tuple[str, str, str | None, bool]]:
    """(path, value, select, create) edits that put ``percent`` % of traffic on the canary."""
    target = settings.canary.target
    if isinstance(target, CanaryKServeTarget):
        select, _doc = _kserve_doc(text, target, filename)
        uri = render_value(target.value, values)
        return [(KSERVE_URI, uri, select, False), (KSERVE_PERCENT, str(percent), select, True)]
    assert isinstance(target, CanaryWeightedTarget)
    uri = render_value(target.value, values)
    vsel = target.value_select or target.select
    if final and percent == 100 and target.primary_value is not None:
        # the new version becomes the primary; the weights go back to primary 100 / canary 0
        return [(target.primary_value, uri, vsel, False), (target.primary_weight, "100", target.select, False),
                (target.canary_weight, "0", target.select, False)]
    out = []
    if target.canary_value is not None:
        out.append((target.canary_value, uri, vsel, False))
    out += [(target.canary_weight, str(percent), target.select, False),
            (target.primary_weight, str(100 - percent), target.select, False)]
    return out


def _apply(text: str, edits: Sequence[tuple[str, str, str | None, bool]], filename: str) -> str:
    for path, value, select, create in edits:
        text = _set(text, path, value, select=select, filename=filename, create=create)
    return text


def _weight(text: str, path: str, select: str | None, filename: str) -> int:
    v = _read(text, path, select=select, filename=filename)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
        raise ManifestError(f"{filename}: {path} holds {v!r}, not a traffic weight between 0 and 100")
    return int(v)


def plan_step(text: str, settings: CanarySettings, step: int, values: Mapping[str, str], *, filename: str,
              first: bool = False, resume: bool = False) -> str:
    """The manifest text with step index ``step`` of the canary applied (pure).

    * kserve, Serverless/Knative mode: ``spec.predictor.model.storageUri`` = the canary's URI
      (the target's value template) and ``spec.predictor.canaryTrafficPercent`` = the step's
      percent (created when missing). At 100 % KServe promotes the new revision (KServe docs,
      "Canary Rollout Strategy").
    * kserve, Standard mode (``serving.kserve.io/deploymentMode: Standard``/``RawDeployment``):
      a ``spec.canary`` entry named ``v<version>`` with the step's ``trafficPercent`` (created at
      the first step; ``steps: [0, ...]`` starts with a dark launch); the 100 % step puts the
      URI in the primary predictor and removes the entry (:mod:`mlgate.core.canary.kserve`).
    * blue-green: step 1 writes the URI into the idle slot, step 2 switches the pointer to it
      (:mod:`mlgate.core.canary.bluegreen`).
    * istio, httproute: the two weights of the route's stable and canary destinations, as
      weighted below (:mod:`mlgate.core.canary.routes`).
    * weighted: canary weight = percent, primary weight = 100 - percent, ``canary_value`` = the
      canary's URI. The 100 % step with ``primary_value`` instead writes the URI to
      ``primary_value`` and the weights back to primary 100 / canary 0.

    ``first`` (the step that starts a canary) also checks the manifest may start one: a KServe
    ModelMesh InferenceService is refused (:class:`ManifestError`), and a canary
    already in flight (KServe canaryTrafficPercent strictly between 0 and 100, or a weighted
    canary weight above 0) is refused (:class:`Refused`). With ``resume`` (writing step 1
    again after an interrupted attempt), a text that already holds the step is our own earlier
    write: it is returned unchanged without that check. Any other step already in the text is
    returned unchanged too (no second commit).

    Raises:
        ManifestError, UsageError: as :func:`mlgate.core.manifests.set_value`; a weight that is not a
            number 0-100, or weights that do not sum to 100.
        Refused: see ``first``.
    """
    settings = _routed(text, settings, filename)
    target = settings.canary.target
    if isinstance(target, CanaryBlueGreenTarget):
        return bluegreen.plan(text, target, step, values, filename=filename, first=first)
    percent = settings.canary.percents[step]
    final = step == len(settings.canary.percents) - 1
    if isinstance(target, CanaryKServeTarget):
        sel, doc = _kserve_doc(text, target, filename)
        problem = kserve_mode_problem(doc, filename)
        if problem:
            raise ManifestError(problem)
        if kserve_mode(doc) == "standard":
            isvc, uri, version = sel.split("/", 1)[1], render_value(target.value, values), values["version"]
            if final:
                return kserve.promote_entry(text, isvc=isvc, version=version, uri=uri, uri_path=KSERVE_URI,
                                            filename=filename)
            return kserve.set_entry(text, isvc=isvc, version=version, uri=uri, percent=percent, filename=filename,
                                    first=first)
    edits = _edits(settings, percent, values, final=final, text=text, filename=filename)
    new = _apply(text, edits, filename)
    if not first or (resume and new == text):
        if isinstance(target, CanaryWeightedTarget):
            _check_sum(new, target, filename)
        return new
    if isinstance(target, CanaryKServeTarget):
        sel, _doc = _kserve_doc(text, target, filename)
        cur = _read(text, KSERVE_PERCENT, select=sel, filename=filename, create=True)
        if isinstance(cur, (int, float)) and not isinstance(cur, bool) and 0 < cur < 100:
            raise Refused(f"{filename}: {sel} already splits traffic (canaryTrafficPercent: {cur}): another canary "
                          "is in flight; finish or roll it back first")
    else:
        c = _weight(text, target.canary_weight, target.select, filename)
        p = _weight(text, target.primary_weight, target.select, filename)
        if c + p != 100:
            raise ManifestError(f"{filename}: the weights {target.canary_weight} ({c}) and {target.primary_weight} ({p}) "
                                "do not sum to 100")
        if c != 0:
            hint = ("" if target.primary_value else
                    "; without canary.target.primary_value the last canary left its route at 100 %")
            raise Refused(f"{filename}: the canary route {target.canary_weight} already carries {c} % of traffic{hint}; "
                          f"set it to 0 and {target.primary_weight} to 100 first")
        _check_sum(new, target, filename)
    return new


def _routed(text: str, settings: CanarySettings, filename: str) -> CanarySettings:
    """``settings`` with a route target (Istio, Gateway API) resolved to the weighted target of its
    two weights' key paths in ``text`` (:func:`mlgate.core.canary.routes.as_weighted`)."""
    target = settings.canary.target
    if not isinstance(target, (CanaryIstioTarget, CanaryHTTPRouteTarget)):
        return settings
    weighted = routes.as_weighted(text, target, filename)
    return replace(settings, canary=settings.canary.model_copy(update={"target": weighted}))


def _check_sum(text: str, target: CanaryWeightedTarget, filename: str) -> None:
    c = _weight(text, target.canary_weight, target.select, filename)
    p = _weight(text, target.primary_weight, target.select, filename)
    if c + p != 100:
        raise ManifestError(f"{filename}: the weights {target.canary_weight} ({c}) and {target.primary_weight} ({p}) "
                            "would not sum to 100")


def plan_rollback(text: str, settings: CanarySettings, primary_values: Mapping[str, str], *, filename: str,
                  version: str = "", values: Mapping[str, str] | None = None) -> str:
    """The manifest text with traffic back on the primary and the canary's model removed (pure).

    * kserve: ``storageUri`` = the primary's URI and ``canaryTrafficPercent: 0``, which pins
      all traffic to the last revision rolled out with 100 % (KServe docs, "Canary Rollout
      Strategy", rollback). The next canary sets the percent again.
    * kserve, Standard mode: the ``spec.canary`` entry of ``version`` (the canary's) is removed.
    * blue-green: the pointer back on the slot that does not hold ``values``' URI (the canary's).
    * weighted: canary weight 0, primary weight 100, and ``canary_value`` (when configured) =
      the primary's URI.

    Idempotent: a text already rolled back is returned unchanged.
    """
    settings = _routed(text, settings, filename)
    target = settings.canary.target
    if isinstance(target, CanaryBlueGreenTarget):
        return bluegreen.rollback(text, target, values or {}, filename=filename)
    if isinstance(target, CanaryKServeTarget):
        sel, doc = _kserve_doc(text, target, filename)
        if kserve_mode(doc) == "standard":
            return kserve.remove_entry(text, isvc=sel.split("/", 1)[1], version=version, filename=filename)
        uri = render_value(target.value, primary_values)
        return _apply(text, [(KSERVE_URI, uri, sel, False), (KSERVE_PERCENT, "0", sel, True)], filename)
    assert isinstance(target, CanaryWeightedTarget)
    edits: list[tuple[str, str, str | None, bool]] = []
    if target.canary_value is not None:
        edits.append((target.canary_value, render_value(target.value, primary_values),
                      target.value_select or target.select, False))
    edits += [(target.canary_weight, "0", target.select, False), (target.primary_weight, "100", target.select, False)]
    return _apply(text, edits, filename)


def promotion_of(record: CanaryRecord, *, rollback: bool = False) -> Promotion:
    """The canary's current step (or its rollback) as a :class:`~mlgate.core.promotion.Promotion`:
    the source of its branch, PR/MR title and body, and commit message with trailers."""
    src = record.source or {}
    number = src.get("number")
    trigger = Trigger("canary", actor=src.get("actor") or None, repo=src.get("repo") or None,
                      number=int(number) if isinstance(number, int) or (str(number or "").isascii() and str(number or "").isdigit()) else None,
                      forge=src.get("forge") or None, url=src.get("url") or None)
    if rollback:
        step = CanaryStep(record.id or 0, "rollback", 0, record.primary_version, len(record.steps), record.reason)
    else:
        step = CanaryStep(record.id or 0, str(record.step + 1), record.percent, record.primary_version, len(record.steps))
    return Promotion(record.model, record.version, record.environment, record.alias, trigger=trigger,
                     model_uri=record.values.get("model_uri") or None, canary=step)


def commit_message(record: CanaryRecord, *, rollback: bool = False) -> str:
    """The structured commit message of a canary step or rollback (subject + git trailers)."""
    return promotion_of(record, rollback=rollback).message()