"""One choke point for secrets in text the bot writes anywhere: :class:`Redactor`.

Pure core. A :class:`Redactor` is built once from the secret values the bot knows (webhook
secrets, forge tokens, the GitHub App private key, database and MLflow passwords) and replaces
each with ``***`` wherever it appears; it also catches secrets it was not told about by their
well-known shapes, so a token echoed by a proxy or a GitHub Enterprise error page never reaches a
PR comment, the deliveries table, the append-only audit table, a log line or ``--output json``:

- GitHub tokens (GitHub docs, "About authentication to GitHub" → "GitHub's token formats"):
  ``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_`` followed by base62, and ``github_pat_…``;
- GitLab tokens (GitLab docs, "Token overview" → "Token prefixes"): ``glpat-``, ``gldt-``,
  ``glrt-``, ``glcbt-``, ``glptt-``, ``glft-``, ``glimt-``, ``glagent-``, ``gloas-``,
  ``glsoat-``, ``glffct-``, ``gltst-``;
- ``Authorization: <scheme> <credentials>`` and ``Private-Token: …`` headers echoed in a
  message, ``Bearer <b64token>`` (RFC 6750 section 2.1), JWTs (RFC 7519: three base64url parts,
  the first two starting ``eyJ``);
- PEM private keys (RFC 7468: ``-----BEGIN … PRIVATE KEY-----`` to its END line, or to the end
  of the text when it was cut);
- URL userinfo (RFC 3986 section 3.2.1, through :func:`mlgate.core.urls.redact_url`) and
  ``access_token`` / ``private_token`` / ``token`` / ``client_secret`` query parameters.

A configured secret is also looked for in the forms it takes when echoed: percent-encoded
(a URL), JSON-escaped, and, for multi-line secrets such as a PEM key, line by line (every line
of at least :data:`MIN_SECRET_LENGTH` characters) and as its base64 body on one line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from mlgate.core.urls import redact_url

#: What a secret is replaced with.
MASK = "***"
#: Configured secrets (and lines of multi-line secrets) shorter than this are not looked for:
#: replacing every "ab" would garble the text without hiding anything worth hiding.
MIN_SECRET_LENGTH = 6

_GITLAB_PREFIXES = "glpat|gldt|glrt|glcbt|glptt|glft|glimt|glagent|gloas|glsoat|glffct|gltst"

#: (pattern, replacement) applied in order after the configured secrets.
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys: the whole block, or to the end of a cut text (RFC 7468 section 2)
    (re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S),
     rf"-----BEGIN \1PRIVATE KEY-----{MASK}-----END \1PRIVATE KEY-----"),
    # header lines echoed in a message: Authorization: <scheme> <credentials>, Private-Token / Job-Token
    (re.compile(r"(?i)(\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|token|basic|digest|jwt)\s+)?"
                r"[^\s\"',;}]+"), rf"\1{MASK}"),
    (re.compile(r"(?i)(\b(?:private|job|deploy)[-_]token\b[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+"), rf"\1{MASK}"),
    # GitHub: ghp_/gho_/ghu_/ghs_/ghr_ + base62, fine-grained github_pat_
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{16,255}\b"), MASK),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{16,255}\b"), MASK),
    # GitLab token prefixes
    (re.compile(rf"\b(?:{_GITLAB_PREFIXES})-[A-Za-z0-9_.-]{{16,255}}"), MASK),
    # JWT (RFC 7519): header.payload.signature in base64url, header and payload are JSON objects
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), MASK),
    # Bearer b64token (RFC 6750 section 2.1) outside a header line
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/-]{16,}=*"), rf"\1{MASK}"),
    # credentials in a query string
    (re.compile(r"(?i)([?&](?:access_token|private_token|token|client_secret|password)=)[^&\s#\"']+"), rf"\1{MASK}"),
)


def _variants(secret: str) -> set[str]:
    """The forms ``secret`` can take in echoed text (see the module docstring)."""
    out = {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}
    lines = [ln.strip() for ln in secret.splitlines()]
    if len(lines) > 1:
        body = [ln for ln in lines if ln and not ln.startswith("-----")]
        out.update(ln for ln in lines if ln)
        if body:
            out.add("".join(body))
    return {v for v in out if len(v) >= MIN_SECRET_LENGTH}


class Redactor:
    """Replaces secrets with :data:`MASK` in text and in JSON-like values.

    Args:
        secrets: the secret values the bot holds (plain text; None and empty values are skipped;
            values shorter than :data:`MIN_SECRET_LENGTH` characters are not looked for, their
            well-known shapes still are).

    The same instance is safe to share between threads (it holds no mutable state).
    """

    def __init__(self, secrets: Iterable[str | None] = ()):
        found: set[str] = set()
        for s in secrets:
            if s:
                found |= _variants(s)
        #: longest first, so that a secret containing another is replaced whole
        self.secrets: tuple[str, ...] = tuple(sorted(found, key=lambda s: (-len(s), s)))

    def text(self, text: str) -> str:
        """``text`` with every configured secret and every well-known credential shape masked.

        Idempotent: redacting redacted text changes nothing.
        """
        if not text:
            return text
        for s in self.secrets:
            if s in text:
                text = text.replace(s, MASK)
        for rx, repl in _SHAPES:
            text = rx.sub(repl, text)
        return redact_url(text)

    __call__ = text

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value (dicts, lists, tuples, strings, numbers) with every string
        redacted by :meth:`text`, keys included; other objects are redacted as ``str(value)``."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return self.text(str(value))


#: A redactor that knows no configured secret: the well-known shapes only.
SHAPES_ONLY = Redactor()
