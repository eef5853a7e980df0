"""A repository name the forge could not have sent is refused before any request (issue 10:
``acme/../../orgs/acme`` made the bot call ``GET /orgs/acme/contents/.mlgate.yml``), against
``mlgate bot serve`` and the fake GitHub and GitLab."""

from __future__ import annotations

import json

import pytest

from tests.e2e.bot.conftest import World
from tests.e2e.bot.deliveries import GL

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("full_name", ["acme/../../orgs/acme", "acme/..", "acme/app/../../../x", "acme%2F..%2Fx/y"])
def test_a_path_traversing_full_name_is_refused_before_any_request(world: World, full_name: str):
    w = world
    p = w.comment("/promote", by="carol")
    p["repository"]["full_name"] = full_name
    before = len(w.gh.requests)
    info = w.bot.wait(w.bot.send_github("issue_comment", p))[0]
    assert info.status == "failed" and info.attempts == 1, info
    assert "repository.full_name" in (info.error or "") and "is not a GitHub repository" in (info.error or "")
    assert w.gh.requests[before:] == [], "the bot sent a request for a hostile repository name"
    assert w.reply() == ""


@pytest.mark.parametrize("path", ["group/../../x", "group/..", ".hidden/x", "group/x.git"])
def test_a_hostile_gitlab_project_path_is_refused_before_any_request(fakes, bot, path: str):
    _, gl = fakes
    p = json.loads((GL / "note-merge-request.json").read_text())
    p["project"]["path_with_namespace"] = path
    p["object_attributes"]["note"] = "/promote"
    p["object_attributes"]["id"] = abs(hash(path)) % 10**9
    before = len(gl.requests)
    info = bot.wait(bot.send_gitlab("Note Hook", p))[0]
    assert info.status == "failed" and info.attempts == 1, info
    assert "project.path_with_namespace" in (info.error or "")
    assert gl.requests[before:] == [], "the bot sent a request for a hostile project path"
