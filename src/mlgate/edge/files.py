"""Reading and writing manifest files inside a repository checkout (thin I/O edge).

The pure edit engine is :mod:`mlgate.core.manifests`; this module only

* resolves a repository-relative path, refusing anything that would leave the repository
  (``..`` components, absolute paths, symlinks whose target lies outside the root);
* reads a file's bytes and decodes them as UTF-8 without touching line ends (CRLF stays CRLF,
  a missing final newline stays missing, a byte-order mark stays);
* writes the new text back atomically (temporary file in the same directory, then
  ``os.replace``), keeping the file's permission bits, and writing through a symlink to its
  target rather than replacing the link.

Errors raise :class:`mlgate.core.errors.ManifestError` (exit 2) with a ``file: message`` text.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from mlgate.core.errors import ManifestError

__all__ = ["resolve_in_repo", "read_text", "write_text"]


def resolve_in_repo(root: str | Path, relpath: str | Path) -> Path:
    """The real path of ``relpath`` inside the repository ``root``.

    Args:
        root: the repository's working tree (a directory).
        relpath: a path relative to ``root`` with ``/`` separators, e.g. ``envs/prod/isvc.yaml``.

    Returns:
        The absolute, symlink-resolved path, guaranteed to lie inside ``root``'s real path.
        The file itself need not exist (reading it reports that).

    Raises:
        ManifestError: an empty path, a NUL byte, an absolute path, a ``..`` component, or a
            path that a symlink leads outside the repository.
    """
    shown = str(relpath)
    if not shown or not shown.strip():
        raise ManifestError("<empty path>: a manifest path is required")
    if "\0" in shown:
        raise ManifestError(f"{shown!r}: the path contains a NUL byte")
    posix = PurePosixPath(shown)
    if posix.is_absolute() or PureWindowsPath(shown).is_absolute() or PureWindowsPath(shown).drive:
        raise ManifestError(f"{shown}: absolute paths are refused; give a path relative to the repository root")
    if ".." in posix.parts or ".." in PureWindowsPath(shown).parts:
        raise ManifestError(f"{shown}: '..' in a manifest path is refused; the file must be inside the repository")
    real_root = Path(root).resolve(strict=False)
    candidate = (real_root / posix).resolve(strict=False)
    if candidate != real_root and real_root not in candidate.parents:
        raise ManifestError(
            f"{shown}: leads outside the repository through a symlink (to {candidate}); refused"
        )
    return candidate


def read_text(path: str | Path, display: str | None = None) -> str:
    """Read a manifest exactly: UTF-8 decoded, line ends and final newline untouched.

    Args:
        path: the file to read.
        display: the name used in messages (default: ``path``).

    Raises:
        ManifestError: missing file, a directory, unreadable, or not UTF-8.
    """
    name = display or str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{name}: is a directory, not a manifest file") from None
    except PermissionError:
        raise ManifestError(f"{name}: permission denied") from None
    except OSError as e:
        raise ManifestError(f"{name}: cannot read: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ManifestError(f"{name}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); refused") from None


def write_text(path: str | Path, text: str, display: str | None = None) -> None:
    """Write ``text`` (UTF-8, no newline translation) atomically over ``path``.

    A symlink is followed and its target replaced; the file's permission bits are kept.

    Raises:
        ManifestError: the directory is not writable or the disk is full.
    """
    name = display or str(path)
    target = Path(path).resolve(strict=False)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ManifestError(f"{name}: the new text cannot be encoded as UTF-8 ({e.reason}); nothing written") from None
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = None
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".mlgate-tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
        tmp_name = None
    except OSError as e:
        raise ManifestError(f"{name}: cannot write: {e.strerror or e}") from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
