"""core.failures: one table says which failures are permanent (fail now) and which are transient."""

from __future__ import annotations

import pytest

from mlgate.core.errors import ConfigError, InfraError, ManifestError, Refused, UsageError
from mlgate.core.failures import classify, http_status


class HTTPErr(Exception):
    """Like PyGithub's GithubException (``status``, ``data``)."""

    def __init__(self, status: int, message: str = "", data: object = None):
        super().__init__(message)
        self.status, self.data = status, data


class GitlabLike(Exception):
    def __init__(self, code: int):
        super().__init__(f"{code}: error")
        self.response_code = code


class MlflowLike(Exception):
    def __init__(self, code: int):
        super().__init__("RESOURCE_DOES_NOT_EXIST")
        self._code = code

    def get_http_status_code(self) -> int:
        return self._code


class Resp:
    def __init__(self, code: int):
        self.status_code = code


class HttpxLike(Exception):
    def __init__(self, code: int):
        super().__init__("HTTP error")
        self.response = Resp(code)


def _db(name: str) -> Exception:
    """An exception named like a PEP 249 / SQLAlchemy class (the classifier reads names only)."""
    return type(name, (Exception,), {})("PostgreSQL text fields cannot contain NUL (0x00) bytes")


class ForgeErrorLike(UsageError):
    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class RetryLater(Exception):
    def __init__(self, after: float | None):
        super().__init__("busy")
        self.retry_after = after


CASES = [
    # forge answers
    (HTTPErr(400), True), (HTTPErr(401), True), (HTTPErr(404), True), (HTTPErr(410), True),
    (HTTPErr(422, "Validation Failed"), True),
    (HTTPErr(403, "Resource not accessible by integration"), True),
    (HTTPErr(403, "You have exceeded a secondary rate limit"), False),
    (HTTPErr(403, "", {"message": "API rate limit exceeded"}), False),
    (HTTPErr(408), False), (HTTPErr(409), False), (HTTPErr(425), False), (HTTPErr(429), False),
    (HTTPErr(500), False), (HTTPErr(502), False), (HTTPErr(503), False),
    (GitlabLike(404), True), (GitlabLike(429), False), (GitlabLike(500), False),
    (MlflowLike(404), True), (MlflowLike(503), False),
    (HttpxLike(401), True), (HttpxLike(504), False),
    # mlgate's own errors
    (ForgeErrorLike("GitHub refused to open the promotion PR", 422), True),
    (ForgeErrorLike("GitLab says an MR exists but none is open", 409), False),
    (ForgeErrorLike("no answer", 0), True),
    (ConfigError([]), True), (Refused("no"), True), (ManifestError("x"), True), (UsageError("x"), True),
    (InfraError("MLflow at http://x is unreachable"), False),
    (RetryLater(61.0), False), (RetryLater(None), False),
    # databases (SQLAlchemy and psycopg use the PEP 249 names)
    (_db("DataError"), True), (_db("IntegrityError"), True), (_db("NotSupportedError"), True),
    (_db("OperationalError"), False), (_db("InterfaceError"), False),
    # the network
    (ConnectionResetError("reset"), False), (TimeoutError("slow"), False), (OSError("no route"), False),
    # anything else: retried up to the attempt limit
    (RuntimeError("boom"), False), (KeyError("x"), False),
]


@pytest.mark.parametrize(("exc", "permanent"), CASES, ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v))
def test_the_table(exc: BaseException, permanent: bool) -> None:
    verdict = classify(exc)
    assert verdict.permanent is permanent, verdict.reason
    assert verdict.reason


def test_retry_after_is_kept() -> None:
    assert classify(RetryLater(61.0)).retry_after == 61.0
    assert classify(RetryLater(None)).retry_after is None
    assert classify(RetryLater(-1)).retry_after is None


def test_a_wrapped_forge_error_is_classified_by_what_the_server_said() -> None:
    try:
        try:
            raise HTTPErr(404)
        except HTTPErr as e:
            raise RuntimeError("wrapper") from e
    except RuntimeError as wrapped:
        assert http_status(wrapped) == 404
        assert classify(wrapped).permanent


def test_a_suppressed_context_is_not_read() -> None:
    try:
        try:
            raise HTTPErr(500)
        except HTTPErr:
            raise ConfigError([]) from None
    except ConfigError as e:
        assert http_status(e) is None
        assert classify(e).permanent


def test_db_subclass_names_count() -> None:
    base = type("DataError", (Exception,), {})
    sub = type("StringDataRightTruncation", (base,), {})
    assert classify(sub("value too long")).permanent
