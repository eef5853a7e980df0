"""Issue 10, "Approvals re-pointed by GitHub", end to end: signed deliveries → ``mlgate bot serve`` →
the OpenAPI-checked fake GitHub (real git) and a real MLflow server.

bob approves commit A (the ``pull_request_review`` delivery carries A); main moves on and is merged
into the PR, giving head B; GitHub moves bob's review's ``commit_id`` to B (the fake does too, see
:meth:`tests.fakes.github_server.FakeGitHub.merge_base_into`); the ``pull_request`` ``synchronize``
delivery arrives. The reviews API now says "approved B", but the bot recorded A: ``/promote`` is
refused as stale, unless ``approvals.keep_on_base_merge`` is on and the merge brought only main's
changes (checked through "Compare two commits").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.bot.conftest import World, mlgate_yml

pytestmark = pytest.mark.slow

KEEP = "      keep_on_base_merge: true\n"


def review_delivery(w: World, review: Any) -> dict[str, Any]:
    """The ``pull_request_review`` ``submitted`` delivery of the fake's ``review`` (its id and commit)."""
    from tests.e2e.bot.deliveries import github_review, octokit

    p = github_review(w.gh, w.repo, w.pr, review.user, review.state.lower(), review.commit_id)
    p["review"]["id"] = review.id
    octokit.validate_webhook("pull_request_review", p)
    return p


def approve_and_merge_main(w: World, *, send_review: bool = True,
                           extra_files: dict[str, str | None] | None = None) -> tuple[str, str]:
    """bob approves the head A; main changes params.py; main is merged into the PR (head B, GitHub
    moves the review to B); the synchronize delivery is handled. Returns (A, B)."""
    from tests.e2e.bot.deliveries import github_pull_request, octokit

    a = w.head()
    w.register(a)
    review = w.gh.add_review(w.repo, w.pr, "bob", "APPROVED", commit_id=a)
    if send_review:
        w.bot.wait(w.bot.send_github("pull_request_review", review_delivery(w, review)))
        assert w.gh.statuses(w.repo, a)[-1]["state"] == "success"
    w.gh.commit(w.repo, "main", {"params.py": "lr = 0.2\n"}, author="carol", message="tune on main")
    b = w.gh.merge_base_into(w.repo, w.pr, author="alice", extra_files=extra_files)
    assert w.head() == b and review.commit_id == b, "GitHub moves the review to the merge"
    w.register(b)
    sync = github_pull_request(w.gh, w.repo, w.pr, "synchronize")
    sync["pull_request"]["updated_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # GitHub: the push
    octokit.validate_webhook("pull_request", sync)
    w.bot.wait(w.bot.send_github("pull_request", sync))
    return a, b


def keep_on_base_merge(w: World) -> None:
    w.gh.commit(w.repo, "main", {".mlgate.yml": mlgate_yml(w.model, w.deploy, extra_staging=KEEP)},
                author="carol", message="keep approvals across merges of main")


def test_a_review_github_moved_across_a_merge_of_main_is_stale(world: World):
    w = world
    a, b = approve_and_merge_main(w)
    st = w.gh.statuses(w.repo, b)[-1]
    assert st["state"] == "pending" and "approvals" in st["description"]
    info = w.promote("/promote", by="carol")
    assert info.status == "done" and "refused" in info.outcome, info
    assert w.promotion_prs() == []
    reply = w.reply()
    assert f"stale: approved {a[:7]}, head is now {b[:7]}" in reply, reply
    assert "keep_on_base_merge is off" in reply
    assert w.gh.calls("GET", "/compare/") == []  # the policy needs no comparison when it is off


def test_an_unrecorded_review_on_a_pushed_head_is_stale(world: World):
    # the bot never saw bob's review (installed after it, or the delivery was lost), but it saw a push
    # after it (synchronize, pull_request.updated_at at or after the review's submitted_at)
    w = world
    _a, b = approve_and_merge_main(w, send_review=False)
    info = w.promote("/promote", by="carol")
    assert "refused" in info.outcome and w.promotion_prs() == []
    assert "commit approved is unknown" in w.reply() and b[:7] in w.reply()
    # a review submitted after that push was given on the head GitHub showed: it counts
    w.gh.add_review(w.repo, w.pr, "bob", "APPROVED", commit_id=b, at="2099-01-01T00:00:00Z")
    info = w.promote("/promote", by="carol")
    assert "promotion PR opened" in info.outcome, (info, w.reply())


def test_keep_on_base_merge_keeps_an_approval_when_the_merge_only_brought_main(world: World):
    w = world
    keep_on_base_merge(w)
    a, b = approve_and_merge_main(w)
    assert w.gh.statuses(w.repo, b)[-1]["state"] == "success"
    info = w.promote("/promote", by="carol")
    assert "promotion PR opened" in info.outcome, (info, w.reply())
    assert len(w.promotion_prs()) == 1 and "@bob" in w.promotion_prs()[0].body
    compares = w.gh.calls("GET", f"/repos/{w.repo}/compare/")
    assert any(f"{a}...{b}" in path for _, path, _ in compares), compares
    assert all(status == 200 for _, _, status in compares)


def test_keep_on_base_merge_refuses_a_merge_that_also_changed_other_files(world: World):
    w = world
    keep_on_base_merge(w)
    a, b = approve_and_merge_main(w, extra_files={"train.py": "print('sneaky')\n"})
    info = w.promote("/promote", by="carol")
    assert "refused" in info.outcome and w.promotion_prs() == []
    reply = w.reply()
    assert f"stale: approved {a[:7]}, head is now {b[:7]}" in reply
    assert "train.py" in reply and "beyond what the base branch changed" in reply


# ---------------------------------------------------------------- GitLab: the same rule on the recorded approval

from tests.e2e.bot.test_gitlab_scenarios import approve as gl_approve, fingerprint, glw, note, reply  # noqa: E402,F401


def test_gitlab_merge_of_the_target_branch_is_stale_unless_keep_on_base_merge(bot, glw, mlflow_client):  # noqa: F811
    gl, proj, mr, a, model, deploy = glw
    gl_approve(bot, gl, proj, mr, a, "bob")  # recorded: bob approved A
    gl.commit(proj.path, "main", {"params.py": "lr = 0.2\n"}, author="carol")
    b = gl.merge_target_into(proj.path, mr.iid, author="alice")
    yml = mlgate_yml(model, deploy)
    mlflow_client.create_model_version(model, source=f"s3://models/{model}/{b[:8]}", tags={
        "mlgate.git_commit": b, "mlgate.gates": "passed", "mlgate.gates.fingerprint": fingerprint(yml)})
    info = note(bot, gl, proj, mr, b, "carol", "/promote")
    assert "refused" in info.outcome and gl.projects[deploy].mrs == {}
    assert f"stale: approved {a[:7]}, head is now {b[:7]}" in reply(proj, mr), reply(proj, mr)
    # the policy is read from the default branch: turn keep_on_base_merge on there
    gl.commit(proj.path, "main", {".mlgate.yml": mlgate_yml(model, deploy, extra_staging=KEEP)}, author="carol")
    info = note(bot, gl, proj, mr, b, "carol", "/promote")
    assert "promotion PR opened" in info.outcome, (info, reply(proj, mr))
    assert any("/repository/compare" in path and status == 200 for _, path, status in gl.requests)
    # an "evil merge" (the merge commit changes train.py too) is stale again
    c = gl.merge_target_into(proj.path, mr.iid, author="alice", extra_files={"train.py": "x = 3\n"})
    mlflow_client.create_model_version(model, source=f"s3://models/{model}/{c[:8]}", tags={
        "mlgate.git_commit": c, "mlgate.gates": "passed", "mlgate.gates.fingerprint": fingerprint(yml)})
    info = note(bot, gl, proj, mr, c, "carol", "/promote")
    assert "refused" in info.outcome and "train.py" in reply(proj, mr), reply(proj, mr)
