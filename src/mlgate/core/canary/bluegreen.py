"""Blue-green through the canary machinery (pure): two slots and an active pointer.

Step 1 (0 % of traffic) writes the new version's URI into the idle slot (the slot the pointer
does not name); the analysis then runs before any traffic moves (pre-switch). Step 2 (100 %)
switches the pointer to the slot that holds the new version: one line. After the switch the
analysis runs for ``bake`` seconds, then the version is promoted. The rollback switches the
pointer back to the other slot: one line, no rebuild (the old version never left its slot).

Which slot is which is read from the text each time (the slot holding the new URI is the new
one), so every edit is idempotent and a restarted worker needs no extra state.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlgate.core.config import CanaryBlueGreenTarget
from mlgate.core.errors import ManifestError, Refused
from mlgate.core.manifests import render_value, set_value


def _read(text: str, path: str, select: str | None, filename: str) -> object:
    return set_value(text, path, "0", select=select, filename=filename).old


def _state(text: str, t: CanaryBlueGreenTarget, filename: str) -> tuple[str, dict[str, object]]:
    """(the active slot's name, each slot's URI) as the text has them."""
    active = _read(text, t.active, t.select, filename)
    if active not in t.slots:
        raise ManifestError(f"{filename}: {t.active} is {active!r}, not one of the slots {sorted(t.slots)}")
    return str(active), {n: _read(text, s.value, s.select, filename) for n, s in t.slots.items()}


def _other(t: CanaryBlueGreenTarget, name: str) -> str:
    return next(n for n in t.slots if n != name)


def plan(text: str, t: CanaryBlueGreenTarget, step: int, values: Mapping[str, str], *, filename: str,
         first: bool = False) -> str:
    """The text with step ``step`` (0: write the idle slot; 1: switch the pointer) applied (pure).

    Raises:
        Refused: ``first`` and the active slot already serves the new version.
        ManifestError: the pointer names no slot; at the switch, no slot holds the new version.
    """
    uri = render_value(t.value, values)
    active, uris = _state(text, t, filename)
    holders = [n for n, u in uris.items() if u == uri]
    if step == 0:
        if active in holders:
            if first:
                raise Refused(f"{filename}: the active slot {active!r} already serves {uri}: there is nothing to switch to")
            return text
        idle = _other(t, active)
        slot = t.slots[idle]
        return set_value(text, slot.value, uri, select=slot.select, filename=filename).text
    if not holders:
        raise ManifestError(f"{filename}: no slot holds {uri}; the idle slot was not written (step 1)")
    return set_value(text, t.active, holders[0], select=t.select, filename=filename).text


def rollback(text: str, t: CanaryBlueGreenTarget, values: Mapping[str, str], *, filename: str) -> str:
    """The pointer back on the slot that does not hold the new version (``values``: the new
    version's), one line; unchanged when it never switched (pure, idempotent)."""
    uri = render_value(t.value, values)
    active, uris = _state(text, t, filename)
    if uris.get(active) != uri:
        return text
    return set_value(text, t.active, _other(t, active), select=t.select, filename=filename).text
