"""What git deploys, from promotion trailers and line ownership (mlgate.core.reconcile).

Cases drawn from how GitOps tools decide the deployed revision from history: Flux and Argo CD
treat the branch head as the truth and a revert as a new change (never "the previous
promotion again"); argocd-image-updater's git write-back reads its own commit trailers back.
"""

from __future__ import annotations

from mlgate.core.promotion import Promotion
from mlgate.core.reconcile import Deployed, Undecided, deployed


def promo(model: str, version: str, env: str = "staging", alias: str = "staging") -> str:
    return Promotion(model, version, env, alias).message()


def test_the_newest_promotion_still_in_the_file_is_what_runs():
    history = [("c3", "t3", promo("wine", "3")), ("c2", "t2", promo("wine", "2")), ("c1", "t1", "initial")]
    paths = {"c3": ["isvc.yaml"], "c2": ["isvc.yaml"]}
    out = deployed(history, paths, {"isvc.yaml": {"c1", "c3"}})
    assert [(e.promotion.version, e.commit, e.at) for e in out] == [("3", "c3", "t3")]


def test_each_model_and_environment_is_decided_on_its_own():
    history = [("c4", "t", promo("wine", "4", "production", "champion")), ("c3", "t", promo("iris", "7")),
               ("c2", "t", promo("wine", "3"))]
    paths = {"c4": ["prod.yaml"], "c3": ["values.yaml"], "c2": ["staging.yaml"]}
    owners = {"prod.yaml": {"c4"}, "values.yaml": {"c3", "c0"}, "staging.yaml": {"c2"}}
    out = deployed(history, paths, owners)
    assert [(e.promotion.model, e.promotion.environment, e.promotion.version) for e in out] == [
        ("wine", "production", "4"), ("iris", "staging", "7"), ("wine", "staging", "3")]


def test_commits_without_trailers_are_skipped():
    history = [("c9", "t", "bump replicas"), ("c2", "t", promo("wine", "2"))]
    out = deployed(history, {"c2": ["isvc.yaml"]}, {"isvc.yaml": {"c2", "c9"}})
    assert [e.promotion.version for e in out] == ["2"]


def test_a_hand_edit_that_replaced_the_promotion_is_reported_not_guessed():
    history = [("c9", "t", "pin the model by hand"), ("c2", "t", promo("wine", "2"))]
    out = deployed(history, {"c2": ["isvc.yaml"]}, {"isvc.yaml": {"c9", "c1"}})
    assert len(out) == 1 and isinstance(out[0], Undecided)
    assert "no longer in isvc.yaml" in out[0].reason and "mlgate promote" in out[0].reason


def test_a_revert_is_a_new_change_and_the_shallow_clone_is_named():
    history = [("r", "t", 'Revert "Promote wine to version 3 in staging"\n\nThis reverts commit c3.'),
               ("c3", "t", promo("wine", "3")), ("c2", "t", promo("wine", "2"))]
    out = deployed(history, {"c3": ["isvc.yaml"], "c2": ["isvc.yaml"]}, {"isvc.yaml": {"r", "c1"}}, shallow=True)
    assert isinstance(out[0], Undecided) and "shallow" in out[0].reason


def test_an_older_promotion_still_in_place_wins_over_a_replaced_newer_one():
    # v3 changed a line that a later hand edit replaced; v2's own line is still there
    history = [("h", "t", "hand edit"), ("c3", "t", promo("wine", "3")), ("c2", "t", promo("wine", "2"))]
    out = deployed(history, {"c3": ["a.yaml"], "c2": ["b.yaml"]}, {"a.yaml": {"h"}, "b.yaml": {"c2"}})
    assert isinstance(out[0], Deployed) and out[0].promotion.version == "2"


def test_an_environment_whose_newest_change_is_a_canary_step_is_left_to_the_canary():
    step = ("canary: wine v3 at 10 %\n\nbody\n\nModel: wine\nModel-Version: 3\nPrimary-Version: 2\n"
            "Environment: production\nCanary-Id: 1\nCanary-Step: 1\nCanary-Percent: 10")
    history = [("s1", "t", step), ("c2", "t", promo("wine", "2", "production", "champion"))]
    assert deployed(history, {"c2": ["p.yaml"]}, {"p.yaml": {"c2", "s1"}}) == []
