"""GitLab end to end: a signed (token) ``Note Hook`` → ``mlgate bot serve`` → fake GitLab (documented
shapes, real git) and a real MLflow server."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.bot.conftest import BOT, ISVC, mlgate_yml
from tests.e2e.bot.deliveries import gitlab_note

pytestmark = pytest.mark.slow


@pytest.fixture
def glw(fakes, bot, mlflow_client):
    _, gl = fakes
    n = uuid.uuid4().hex[:6]
    model, repo, deploy = f"wine-{n}", f"grp/model-{n}", f"grp/deploy-{n}"
    gl.add_project(deploy, {"staging/isvc.yaml": ISVC.format(name=model), "production/isvc.yaml": ISVC.format(name=model)})
    proj = gl.add_project(repo, {".mlgate.yml": mlgate_yml(model, deploy)})
    proj.approvals_required = 0  # the project itself asks for none: approvals_left is 0 from the start
    for user, level in (("alice", 30), ("bob", 30), ("carol", 40), ("dave", 20)):
        gl.set_access(repo, user, level)
    sha = gl.commit(repo, "feature", {"train.py": "x = 2\n"}, author="alice")
    mr = gl.open_mr(repo, "feature", author="alice")
    mlflow_client.create_registered_model(model)
    mlflow_client.create_model_version(model, source=f"s3://models/{model}/{sha[:8]}",
                                       tags={"mlgate.git_commit": sha, "mlgate.gates": "passed",
                                             "mlgate.gates.fingerprint": fingerprint(mlgate_yml(model, deploy))})
    errors = len(gl.errors)
    yield gl, proj, mr, sha, model, deploy
    assert gl.errors[errors:] == [], "the bot sent requests the documented GitLab API does not accept"


def approve(bot, gl, proj, mr, sha, user):
    """``user`` approves the MR on GitLab, which sends the ``Merge Request Hook`` (action ``approved``,
    webhook_events.md "Merge request events"): the bot records the commit approved."""
    import json

    from tests.e2e.bot.deliveries import GL

    if user not in proj.mrs[mr.iid].approved_by:
        gl.approve(proj.path, mr.iid, user)
    p = json.loads((GL / "merge-request.json").read_text())
    p["user"].update(username=user, id=gl.user(user), name=user.title())
    p["project"].update(id=proj.id, path_with_namespace=proj.path, default_branch=proj.default_branch)
    a = p["object_attributes"]
    a.update(action="approved", iid=mr.iid, id=mr.id, source_branch=mr.source_branch, target_branch=mr.target_branch,
             source_project_id=proj.id, target_project_id=proj.id, author_id=gl.user(mr.author))
    a["last_commit"]["id"] = sha
    return bot.wait(bot.send_gitlab("Merge Request Hook", p))[0]


def fingerprint(yml: str) -> str:
    """The gates fingerprint ``mlgate validate`` records for a version validated under ``yml``."""
    from mlgate.core.config import parse
    from mlgate.core.promotion import gates_fingerprint

    return gates_fingerprint(parse(yml))


def note(bot, gl, proj, mr, sha, user, body):
    d = bot.send_gitlab("Note Hook", gitlab_note(proj, mr.iid, user, gl.user(user), body, sha))
    return bot.wait(d)[0]


def reply(proj, mr):
    mine = [n for n in proj.notes.values() if n.mr == mr.iid and n.author == BOT]
    assert len(mine) <= 1
    return mine[0].body if mine else ""


def test_gitlab_promote_needs_a_real_approval_then_opens_one_mr(bot, glw):
    gl, proj, mr, sha, model, deploy = glw
    # approvals_left is 0 but approved_by is empty: that is not an approval
    info = note(bot, gl, proj, mr, sha, "carol", "/promote")
    assert "refused" in info.outcome, info
    assert "0/1 approvals" in reply(proj, mr) and gl.projects[deploy].mrs == {}
    approve(bot, gl, proj, mr, sha, "alice")  # the author: never counts
    info = note(bot, gl, proj, mr, sha, "carol", "/promote")
    assert "refused" in info.outcome and "author's own approval" in reply(proj, mr)
    gl.approve(proj.path, mr.iid, "bob")  # no approval webhook reached the bot: the commit approved is unknown
    info = note(bot, gl, proj, mr, sha, "carol", "/promote")
    assert "refused" in info.outcome and "re-approve on the current head" in reply(proj, mr), reply(proj, mr)
    approve(bot, gl, proj, mr, sha, "bob")
    info = note(bot, gl, proj, mr, sha, "carol", "/promote\r\n")
    assert "promotion PR opened" in info.outcome, info
    dp = gl.projects[deploy]
    assert len(dp.mrs) == 1
    pmr = dp.mrs[1]
    assert pmr.source_branch == f"mlgate/promote/{model}/staging/v1" and "mlgate-promotion" in pmr.labels
    g = dp.git
    diff = g.diff(g.branch("main"), g.branch(pmr.source_branch))
    changed = [l for l in diff.splitlines() if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    assert len(changed) == 2 and all("storageUri" in l for l in changed), diff
    assert "Promotion PR opened" in reply(proj, mr) and "merge_requests/1" in reply(proj, mr)
    assert proj.statuses[sha][-1]["status"] == "success" and proj.statuses[sha][-1]["name"] == "mlgate/gates"


def test_gitlab_reporter_cannot_promote(bot, glw):
    gl, proj, mr, sha, model, deploy = glw
    gl.approve(proj.path, mr.iid, "bob")
    info = note(bot, gl, proj, mr, sha, "dave", "/promote")
    assert "refused" in info.outcome and "@dave has triage permission" in reply(proj, mr)
    assert gl.projects[deploy].mrs == {}
