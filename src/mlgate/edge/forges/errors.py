"""The one place that turns a forge client library's exceptions into mlgate errors.

PyGithub raises ``github.GithubException`` (``status``, ``data`` with GitHub's ``message``) and
python-gitlab raises ``gitlab.exceptions.GitlabError`` (``response_code``, ``error_message``) for
an HTTP error answer. :func:`mlgate.edge.forges.base.forge_call` has already retried what can be
retried (and raised :class:`~mlgate.edge.forges.base.ForgeBusy` for rate limits and outages), so
what reaches here is a refusal: retrying the same request will not help.

Both libraries are imported only when a forge is built (CLI start-up stays fast), so their
exceptions are recognised by the top-level package that defines them, without importing it.
"""

from __future__ import annotations

from mlgate.core.errors import MlgateError
from mlgate.edge.forges.base import ForgeError


def forge_refusal(exc: BaseException) -> MlgateError | None:
    """A forge client's error answer as an mlgate error.

    Args:
        exc: any exception raised while talking to a forge.

    Returns:
        A :class:`~mlgate.edge.forges.base.ForgeError` (message "GitHub answered 403: ...", its
        ``status`` the HTTP status, 0 when unknown) for an exception of PyGithub (``github.*``) or
        python-gitlab (``gitlab.*``); None for any other exception (not a forge answer).
    """
    package = type(exc).__module__.split(".")[0]
    if package == "github":
        status = int(getattr(exc, "status", 0) or 0)
        data = getattr(exc, "data", None)
        msg = data.get("message") if isinstance(data, dict) else str(exc)
        return ForgeError(f"GitHub answered {status}: {msg}", status)
    if package == "gitlab":
        status = int(getattr(exc, "response_code", 0) or 0)
        return ForgeError(f"GitLab answered {status}: {getattr(exc, 'error_message', exc)}", status)
    return None
