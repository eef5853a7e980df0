"""Credentials in URLs never reach a message."""

import pytest

from mlgate.core.urls import redact_url


@pytest.mark.parametrize("text,shown", [
    ("http://u:secret@host/x", "http://u:***@host/x"),
    ("http://u:p@ss@host/x", "http://u:***@host/x"),  # an unescaped "@" in the password
    ("https://ghp_token@github.com/a/b.git", "https://***@github.com/a/b.git"),
    ("cannot reach http://a:b@h:1 or https://c:d@e/", "cannot reach http://a:***@h:1 or https://c:***@e/"),
    ("git@github.com:acme/deploy.git", "git@github.com:acme/deploy.git"),
    ("http://host/path?x=1", "http://host/path?x=1"),
])
def test_redact_url(text, shown):
    assert redact_url(text) == shown
