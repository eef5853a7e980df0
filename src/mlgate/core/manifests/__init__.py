"""Minimal, format-preserving edits of YAML manifests (pure core: text in, text out).

How an edit is made (see ``notes/facts.md``: a ruamel.yaml load-and-dump reformats files):

1. The text is parsed with ruamel.yaml's parser into events, and a small composer in this
   module builds a node tree that keeps, for every node, its exact character span
   (``start_mark``/``end_mark``), its quoting style, its anchor, and whether it was written
   in place or reached through an alias (``*name``). Document boundaries come from the
   parser, so a ``---`` line inside a block scalar is never mistaken for a separator.
2. The key path is walked in that tree (``a.b[0].c[name=x].d``; see :func:`parse_path`).
3. The new scalar is rendered in the style of the old one and written into the ORIGINAL
   text at the old scalar's span. Nothing else is re-emitted: comments, indentation, key
   order, quoting elsewhere, flow/block style, anchors, ``---`` markers, CRLF line ends
   and a missing final newline stay byte-identical.
   Only the scalar token itself is replaced: an ``&anchor``, a ``!tag``, and the line breaks
   and comments between them and the value (``key: &a # note`` + value on the next line) stay.
4. The result is parsed again and every document is compared, node by node (tag, value,
   style, anchor, alias), with the original; only the target may differ, and it must load
   as the intended value. Then a text-level check: every character before and after the
   replaced span is unchanged, the replaced span was exactly one scalar token of the original
   and the written text is exactly one scalar token of the result (ruamel.yaml's scanner).
   Any other difference raises :class:`~mlgate.core.errors.ManifestError` and nothing is returned
   to be written.

Scalar typing (the new value is always handed in as text):

* a quoted string stays quoted in the same quote style (a single-quoted one switches to
  double quotes only when the value holds a line break or a non-printable character);
* a plain string stays plain when the new value still loads as a string under YAML 1.2
  *and* YAML 1.1 (Kubernetes' sigs.k8s.io/yaml reads ``no``/``on``/``0777`` the 1.1 way)
  and is a valid plain scalar in its context (flow or block); otherwise it is double quoted
  (single quoted when that avoids escapes);
* an int/float node with a decimal number as the new value stays a plain number; a bool,
  null or timestamp node stays plain when the new value loads with the same type; any
  other new value becomes a string;
* an explicitly tagged node keeps its tag; a value the tag cannot hold (``!!int x``,
  ``!!timestamp garbage``: ruamel.yaml's or PyYAML's safe loader fails on it) is refused;
* in a JSON document (the file name ends in ``.json``, or the document's root is a flow
  mapping/sequence whose mapping keys are all double-quoted) every new scalar is valid JSON:
  strings are written as JSON strings (``\\uXXXX`` for characters YAML needs escaped), a
  number replacing a number stays a number when it is a JSON number, ``true``/``false``/``null``
  stay bare only over a node of the same type;
* a value that is not Unicode text (lone surrogates, as Python decodes a non-UTF-8 argv) is
  refused; characters YAML cannot hold unescaped are written escaped in double quotes;
* block scalars (``|``, ``>``) and aliases (``*name``) are refused.

Anchors, aliases and merge keys (decided here; tested in ``tests/core/test_manifests.py``):

* A path that goes *through an alias* (``canary: *d`` then ``canary.image.tag``) or takes a
  key that a mapping only has *through a merge key* (``canary: {<<: *d}``) is refused,
  naming the alias or merge and the anchor's line: the value lives in the anchored node and
  is shared, so changing it there would change every other user. No override is written
  (a merge is shallow, so an override of ``image`` would have to copy all of ``image``).
* The target scalar itself carrying an anchor that aliases use (``tag: &t v1`` with
  ``other: *t``) is refused for the same reason.
* A path that goes through an anchor's own *definition* (``defaults.image.tag`` where
  ``defaults: &d ...`` is merged elsewhere) is allowed: the user named the shared
  definition. :attr:`Edit.notes` then lists the lines of the aliases that see the change.
* Anchors, aliases and merge keys are never rewritten.

Errors raise :class:`mlgate.core.errors.ManifestError` with a message that starts with
``file:line:`` (or ``file:`` when no single line applies) and names the key path.

The package's modules, one job each: :mod:`mlgate.core.keypath` (key paths), ``nodes`` (the
node tree with spans), ``walk`` (finding a path), ``render`` (scalar quoting and typing),
``spans`` and ``verify`` (the text-level and node-level checks), ``edit`` (:func:`set_value`,
:func:`target_edit`, :func:`render_value`).
"""

from __future__ import annotations

from mlgate.core.keypath import Index, Key, Select, Step, parse_path
from mlgate.core.manifests.edit import Edit, render_value, set_value, target_edit

__all__ = ["Edit", "Key", "Index", "Select", "Step", "parse_path", "set_value", "render_value", "target_edit"]
