"""What git said, for a message: the whole of its stderr, secrets masked, noise dropped.

Pure core. Git's last stderr line is rarely the cause: an unreachable ssh host ends with
"and the repository exists." after "ssh: Could not resolve hostname github.com", an https
remote with "fatal: unable to access ...". :func:`git_said` keeps every line that says
something, drops progress and chatter ("Cloning into", "remote: Counting objects", "Receiving
objects: 42%", "To <url>", hints), and masks credentials with the same :class:`Redactor` the bot
uses (URL userinfo, GitHub/GitLab token shapes, Authorization headers).
"""

from __future__ import annotations

import re

from mlgate.core.redact import SHAPES_ONLY, Redactor

#: Lines of git's stderr that never carry a cause: progress and chatter.
_NOISE = re.compile(
    r"^(?:Cloning into |remote: (?:Counting|Compressing|Enumerating|Total|Finding sources)|"
    r"(?:remote: )?(?:Receiving|Resolving|Unpacking|Counting|Compressing|Writing|Enumerating|Delta compression)\b|"
    r"Total \d|To \S+$|From \S+$|hint: |warning: redirecting to )"
)
#: At most this many lines of git's output go into a message (the cause is near the top).
MAX_LINES = 12


def git_said(stderr: str, redactor: Redactor = SHAPES_ONLY) -> str:
    """The meaningful lines of git's ``stderr``, redacted, one per line ("" when none).

    Args:
        stderr: git's standard error (progress lines end in ``\\r``; each part is a line).
        redactor: masks credentials (default: the well-known shapes and URL userinfo).
    """
    lines = []
    for raw in re.split(r"[\r\n]+", stderr or ""):
        line = raw.strip()
        if not line or _NOISE.match(line):
            continue
        lines.append(redactor.text(line))
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"... ({len(lines) - MAX_LINES} more lines)"]
    return "\n".join(lines)


def with_git_output(message: str, stderr: str, fallback: str, redactor: Redactor = SHAPES_ONLY) -> str:
    """``message`` followed by what git said, indented under it (``fallback`` when git said nothing)."""
    said = git_said(stderr, redactor)
    if not said:
        return f"{message}: {fallback}"
    lines = said.splitlines()
    if len(lines) == 1:
        return f"{message}: {lines[0]}"
    return f"{message}; git said:\n" + "\n".join(f"  {ln}" for ln in lines)
