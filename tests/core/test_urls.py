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


def test_an_ssh_user_name_is_kept_but_an_ssh_password_is_not():
    # issue 11: "ssh://***@host" hid which account a failed clone tried; ssh's user is no secret
    assert redact_url("cannot clone ssh://git@github.com/acme/d.git") == "cannot clone ssh://git@github.com/acme/d.git"
    assert redact_url("ssh://git:hunter22@host/x") == "ssh://git:***@host/x"
    assert redact_url("https://ghp_x@host/x") == "https://***@host/x"
