"""Deployment strategies driven by the real Prometheus of the canary tests (issue 15): Istio and
Gateway API weighted canaries on the upstream route files, pushed to a real git repository step by
step; healthy → promoted, failing → rolled back in one commit."""

from __future__ import annotations

import pytest

from tests.core.test_canary_plan import changed_lines
from tests.core.test_canary_routes import ARGO_SPLIT, HTTPROUTE_90_10
from tests.flows.conftest import drive, file_at, history
from tests.flows.test_canary_live import Setup
from tests.flows.test_canary_undecided import serve

pytestmark = pytest.mark.slow

ISTIO = ("{kind: istio, name: istio-subset-split-vsvc, route: primary, stable: {host: istio-subset-split, "
         "subset: stable}, canary: {host: istio-subset-split, subset: canary}}")
GATEWAY = "{kind: httproute, name: reviews, stable: reviews-v1, canary: reviews-v2}"


def test_an_istio_weighted_canary_is_promoted_two_weights_per_commit(tmp_path, registry, model_name, prometheus,
                                                                     exporter):
    m = model_name
    serve(exporter, prometheus, m, 0.0)
    s = Setup(tmp_path, registry, m, prometheus, {"prod/route.yaml": ARGO_SPLIT.read_text()}, path="prod/route.yaml",
              target=ISTIO)
    cid = s.start().canary.id
    drive(s.tick, lambda: s.record(cid).status == "promoted")
    texts = [file_at(s.repo, sha, "prod/route.yaml") for sha, _ in history(s.repo)]
    assert len(texts) == 4
    for a, b, pct in zip(texts, texts[1:], (10, 50, 100)):
        d = changed_lines(a, b)
        assert d[1] == f"+      weight: {100 - pct}" and d[3] == f"+      weight: {pct}" and len(d) == 4, d
    assert s.registry.get_by_alias(m, "champion").version == "2"


def test_a_gateway_api_weighted_canary_that_fails_is_rolled_back_in_one_commit(tmp_path, registry, model_name,
                                                                               prometheus, exporter):
    m = model_name
    serve(exporter, prometheus, m, 0.2)
    seed = HTTPROUTE_90_10.read_text().replace("weight: 10", "weight: 0").replace("weight: 90", "weight: 100")
    s = Setup(tmp_path, registry, m, prometheus, {"prod/route.yaml": seed}, path="prod/route.yaml", target=GATEWAY,
              failure_limit=0)
    cid = s.start().canary.id
    drive(s.tick, lambda: s.record(cid).status == "rolled_back")
    log = history(s.repo)
    assert [subj for _, subj in log][1:] == [f"canary: {m} v2 at 10 % in production (step 1/3)",
                                             f"canary: roll back {m} v2 in production"]
    assert changed_lines(file_at(s.repo, log[1][0], "prod/route.yaml"), file_at(s.repo, "main", "prod/route.yaml")) == [
        "-      weight: 90", "+      weight: 100", "-      weight: 10", "+      weight: 0"]
    assert file_at(s.repo, "main", "prod/route.yaml") == seed
    assert s.registry.get_by_alias(m, "champion").version == "1"
