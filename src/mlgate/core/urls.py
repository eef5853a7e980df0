"""URL helpers for messages: never show a credential a user put in a URL.

Pure core. Covers ``scheme://user:password@host`` userinfo (RFC 3986 section 3.2.1) and a bare
``scheme://token@host`` (GitHub/GitLab tokens used as the user name in git URLs).
"""

from __future__ import annotations

import re

# The password part runs to the LAST "@" before the path: users paste passwords with "@" in them.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:\s]*)(?::(?P<pw>[^/\s]*))?@")

_SSH_SCHEMES = ("ssh://", "git+ssh://", "ssh+git://")


def redact_url(text: str) -> str:
    """``text`` with every URL's userinfo secret replaced by ``***``.

    ``https://user:pw@host/x`` → ``https://user:***@host/x``; ``https://TOKEN@host`` →
    ``https://***@host``; ``ssh://git@host`` stays (ssh authenticates with keys: its user name,
    "git" on every forge, is no secret and tells which account was tried). Works on whole
    messages that contain URLs, too.
    """

    def repl(m: re.Match[str]) -> str:
        if m.group("pw") is not None:
            return f"{m.group('scheme')}{m.group('user')}:***@"
        if m.group("scheme").lower() in _SSH_SCHEMES:
            return m.group(0)
        return f"{m.group('scheme')}***@" if m.group("user") else m.group(0)

    return _USERINFO.sub(repl, text)
