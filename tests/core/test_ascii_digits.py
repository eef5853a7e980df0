"""Numbers read from the outside are ASCII digits only: ``str.isdigit()`` is also true of "²" and
other Unicode digits that ``int()``/``float()`` refuse, which turned hostile input into crashes
(exit 70, a 500) instead of a clear refusal. Found by the break-it pass of issue 13's intake."""

from __future__ import annotations

import pytest

from mlgate.core.canary.records import validate_version
from mlgate.core.ci_report import retry_after
from mlgate.core.errors import MlgateError


@pytest.mark.parametrize("header", ["²", "١٢", "3²"])
def test_retry_after_of_unicode_digits_is_no_wait_not_a_crash(header):
    assert retry_after(503, {"Retry-After": header}) == 0.0  # retried with the default backoff
    assert retry_after(200, {"Retry-After": header}) is None


def test_retry_after_of_ascii_digits_is_read():
    assert retry_after(429, {"Retry-After": "7"}) == 7.0


@pytest.mark.parametrize("version", ["²", "1²", "٣"])
def test_a_canary_version_of_unicode_digits_is_refused(version):
    with pytest.raises(MlgateError):
        validate_version(version)
