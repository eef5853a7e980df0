"""``mlgate manifest set``: the minimal manifest edit that promotion makes, on its own.

For scripts and GitOps pipelines, the way people use ``yq -i`` or ``kustomize edit set image``,
but without reformatting anything (see :mod:`mlgate.core.manifests`).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import PurePosixPath
from typing import Any

import click

from mlgate.cli.common import check_github_output, emit_json, output_option, write_github_output

_LINES = re.compile(r"[^\n]*\n|[^\n]+")


def split_lines(text: str) -> list[str]:
    """Lines as git counts them: split after each ``\\n`` only (CRLF stays inside the line)."""
    return _LINES.findall(text)


def unified_diff(old: str, new: str, name: str) -> str:
    """A ``git diff``-style unified diff of ``old`` -> ``new`` (marks a missing final newline)."""
    out: list[str] = []
    for line in difflib.unified_diff(split_lines(old), split_lines(new), f"a/{name}", f"b/{name}"):
        if line.endswith("\n"):
            out.append(line)
        else:
            out.append(line + "\n\\ No newline at end of file\n")
    return "".join(out)


def _show(value: Any) -> str:
    """A value as YAML would show it: strings quoted, numbers and booleans bare, None as null."""
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


@click.group("manifest")
def manifest() -> None:
    """Minimal, format-preserving edits of YAML manifests."""


@manifest.command("set")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("keypath")
@click.argument("value")
@click.option("--select", "select", metavar="KIND/NAME", help="Document of a multi-document file, by kind and metadata.name.")
@click.option("--create", is_flag=True, help="Create the last key of KEYPATH when it is missing.")
@click.option("--check", is_flag=True, help="Print the unified diff and write nothing.")
@click.option(
    "--root",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Repository root: FILE must lie inside it ('..', and symlinks that leave it, are refused).",
)
@output_option
def set_(file: str, keypath: str, value: str, select: str | None, create: bool, check: bool, root: str, output: str) -> None:
    """Set KEYPATH in FILE to VALUE, changing that value's line and nothing else.

    \b
    KEYPATH: dotted keys, [N] list index, [key=value] list selector, e.g.
      spec.predictor.model.storageUri
      images[name=ghcr.io/org/app].newTag
      spec.template.spec.containers[name=server].image
    A VALUE that starts with '-' goes after '--':  mlgate manifest set f.yaml a.b -- -1

    \b
    Exit 0: changed (prints FILE:LINE: PATH: OLD -> NEW) or already set (prints a note).
    Exit 2: FILE:LINE: message (missing path, ambiguous document, alias or merge key, ...);
    nothing is written.
    """
    from mlgate.core.errors import MlgateError

    try:
        _set(file, keypath, value, select, create, check, root, output)
    except MlgateError as e:
        if output == "json":
            emit_json({"file": file, "path": keypath, "select": select, "changed": False, "written": False,
                       "error": str(e)})
            click.echo(str(e), err=True)
            raise SystemExit(e.exit_code) from None
        raise


def _set(file: str, keypath: str, value: str, select: str | None, create: bool, check: bool, root: str,
         output: str) -> None:
    from mlgate.core.errors import ManifestError
    from mlgate.edge.files import read_text, resolve_in_repo, write_text
    from mlgate.core.manifests import set_value

    if ".." in PurePosixPath(file).parts:
        raise ManifestError(f"{file}: '..' in a manifest path is refused; run from the repository root or pass --root")
    rel = os.path.relpath(os.path.abspath(file), os.path.abspath(root))
    if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
        raise ManifestError(f"{file}: outside the repository root {root!r}; pass --root DIR to allow it")
    check_github_output()
    path = resolve_in_repo(root, rel)
    text = read_text(path, file)
    edit = set_value(text, keypath, value, select=select, create=create, filename=file)
    diff = unified_diff(text, edit.text, file) if edit.changed else ""
    written = False
    if edit.changed and not check:
        write_text(path, edit.text, file)
        written = True

    try:
        write_github_output({"changed": edit.changed})
    except OSError as e:  # checked above; it vanished in between
        from mlgate.core.errors import UsageError

        done = f"{file} was written; " if written else ""
        raise UsageError(f"{done}cannot append to $GITHUB_OUTPUT: {e.strerror or e}") from None
    if output == "json":
        data: dict[str, Any] = {
            "file": file,
            "path": keypath,
            "select": select,
            "line": edit.line,
            "old": edit.old,
            "new": edit.new,
            "changed": edit.changed,
            "written": written,
            "notes": list(edit.notes),
        }
        if check:
            data["diff"] = diff
        emit_json(data)
        return
    for note in edit.notes:
        click.echo(f"{file}:{edit.line}: note: {note}", err=True)
    if check:
        if diff:
            click.echo(diff, nl=False)
        else:
            click.echo(f"{file}:{edit.line}: {keypath} is already {_show(edit.new)}; nothing to change")
        return
    if edit.changed:
        click.echo(f"{file}:{edit.line}: {keypath}: {_show(edit.old)} -> {_show(edit.new)}")
    else:
        click.echo(f"{file}:{edit.line}: {keypath} is already {_show(edit.new)}; nothing to change")
