"""The dashboard's pages rendered from plain data (no bot, no servers): what a person sees on
/ui, a model page, a canary page and the audit exports, and that the token guards them."""

from __future__ import annotations

import base64
import csv
import io
from dataclasses import replace

import warnings

import pytest

with warnings.catch_warnings():  # starlette 1.x would rather use httpx2; httpx is what the project has
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from mlgate.bot.ui import authorized, create_ui_app, loopback_hosts
from mlgate.core import canary as core
from mlgate.core import config as cfgmod
from mlgate.core.canary import CanarySettings, Observation
from mlgate.core.config import Canary
from mlgate.core.dashboard import FailedDelivery, in_flight, models_seen, pipeline_order

V2 = {"model_uri": "models:/fraud/2", "storage_uri": "s3://m/2", "version": "2", "model": "fraud", "run_id": "r2"}
V1 = dict(V2, model_uri="models:/fraud/1", version="1", run_id="r1")
POLICY = """\
model: fraud
tracking_uri: http://mlflow.example:5000
validate:
  gates:
    - {metric: auc, min: 0.8}
environments:
  - name: production
    requires: staging
    alias: champion
    gitops: {repository: "https://github.com/acme/deploy", path: prod/isvc.yaml, target: {kind: kserve}, mode: pull-request}
  - name: staging
    gitops: {repository: "https://github.com/acme/deploy", path: staging/isvc.yaml, target: {kind: kserve}}
"""


class Info:
    def __init__(self, version, tags):
        self.version, self.tags = version, tags


class Registry:
    def __init__(self):
        self.reads = 0

    def get_by_alias(self, model, alias):
        self.reads += 1
        return {
            "staging": Info("3", {"mlgate.gates": "passed", "mlgate.gate.auc": "passed (0.91)",
                                  "mlgate.promoted.staging.at": "2026-12-01T10:00:00+00:00",
                                  "mlgate.promoted.staging.commit": "abcdef0123456789"}),
            "champion": Info("2", {"mlgate.gates": "passed", "mlgate.gate.auc": "passed (0.88)",
                                   "mlgate.promoted.production.url": "https://github.com/acme/deploy/pull/7"}),
        }.get(alias)


def _canary():
    c = Canary.model_validate({"steps": [10, 50, 100], "interval": 5, "target": {"kind": "kserve"},
                               "analysis": {"prometheus": "http://prom:9090",
                                            "checks": [{"name": "error_rate", "query": "e", "max": 0.05}]}})
    r = core.new_canary(model="fraud", environment="production", alias="champion", version="3", primary_version="2",
                        settings=CanarySettings(c, "/gitops.git", "main", "f.yaml", "push"),
                        values=V2, primary_values=V1, now=1_700_000_000.0)
    r = replace(r, id=4, revision=1)
    r = core.step_written(r, commit="0123456789abcdef", url=None, live=True, now=1_700_000_001.0)
    r, _ = core.measure(r, {"error_rate": Observation(0.01)}, now=1_700_000_006.0)
    r, _ = core.measure(r, {"error_rate": Observation(0.02)}, now=1_700_000_011.0)
    return r


AUDIT = [
    {"id": 1, "at": "2026-12-01T09:00:00+00:00", "forge": "github", "repo": "acme/fraud", "pr": 5, "actor": "alice",
     "command": "/promote fraud@3 to staging", "model": "fraud", "version": "3", "environment": "staging",
     "allowed": True, "reasons": [], "outcome": "pushed", "commit": "abc"},
    {"id": 2, "at": "2026-12-01T11:00:00+00:00", "forge": "github", "repo": "acme/fraud", "pr": 5, "actor": "alice",
     "command": "/promote fraud@3 to production", "model": "fraud", "version": "3", "environment": "production",
     "allowed": False, "reasons": ["needs 2 approvals from maintainers; has 1 (bob)"], "approvers": ["bob"],
     "outcome": "refused"},
]


class Sources:
    def __init__(self, audit=AUDIT, policy=POLICY):
        self.audit, self.text, self.reg, self.policy_reads = list(audit), policy, Registry(), 0

    def audit_records(self):
        return self.audit

    def canaries(self):
        return [_canary()]

    def failed_deliveries(self):
        return [FailedDelivery("d-9", "github", "issue_comment", "GitHub answered 502", 5)]

    def policy(self, forge, repo):
        self.policy_reads += 1
        assert (forge, repo) == ("github", "acme/fraud")
        return cfgmod.parse(self.text, ".mlgate.yml") if self.text else "there is no .mlgate.yml on main"

    def registry(self, cfg):
        return self.reg


def client(sources=None, **kw):
    return TestClient(create_ui_app(sources or Sources(), **kw))


def test_model_page_shows_environments_in_requires_order_with_versions_gates_and_promotions():
    html = client().get("/ui/models/fraud").text
    # staging comes first although production is first in the file: production requires staging
    assert html.index('data-environment="staging"') < html.index('data-environment="production"')
    assert "version 3" in html and "version 2" in html and "passed (0.91)" in html
    assert "abcdef0" in html and "https://github.com/acme/deploy/pull/7" in html
    # the refused /promote waits for an approval, and says who approved so far and what is missing
    assert "waiting for approval" in html and "needs 2 approvals from maintainers; has 1 (bob)" in html
    assert "<svg" in html and "error_rate" in html  # the canary's chart, inline


def test_front_page_lists_models_in_flight_canaries_and_failed_deliveries_with_the_retry_command():
    html = client().get("/ui").text
    assert '<a href="/ui/models/fraud">fraud</a>' in html
    assert "canary 4" in html and "mlgate bot retry d-9" in html and "GitHub answered 502" in html


def test_canary_page_has_a_chart_per_check_with_its_threshold_and_each_decision():
    html = client().get("/ui/canaries/4").text
    assert html.count("<svg") == 1 and "threshold (max)" in html and "traffic %" in html
    assert "step 1 · " in html and html.count("<td>wait</td>") + html.count("<td>advance</td>") >= 1
    assert "<script" not in html  # no JavaScript on the page (pygal's tooltips are off)


def test_unknown_model_or_canary_is_a_404_page():
    assert client().get("/ui/models/nope").status_code == 404
    assert client().get("/ui/canaries/99").status_code == 404


def test_a_policy_that_cannot_be_read_is_shown_on_the_page_not_a_500():
    r = client(Sources(policy=None)).get("/ui/models/fraud")
    assert r.status_code == 200 and "there is no .mlgate.yml on main" in r.text


def test_registry_and_policy_reads_are_cached_for_cache_seconds():
    src, now = Sources(), [1000.0]
    c = client(src, cache_seconds=10, clock=lambda: now[0])
    c.get("/ui/models/fraud")
    reads = src.reg.reads
    c.get("/ui/models/fraud")
    assert (src.reg.reads, src.policy_reads) == (reads, 1)
    now[0] += 11
    c.get("/ui/models/fraud")
    assert src.reg.reads == 2 * reads and src.policy_reads == 2


def test_audit_exports_filter_by_model_and_environment():
    c = client()
    data = c.get("/ui/audit.json", params={"environment": "production"}).json()
    assert [r["id"] for r in data] == [2]
    rows = list(csv.DictReader(io.StringIO(c.get("/ui/audit.csv", params={"model": "fraud"}).text)))
    assert [r["id"] for r in rows] == ["2", "1"]  # newest first
    assert rows[0]["reasons"] == "needs 2 approvals from maintainers; has 1 (bob)"
    assert "attachment" in c.get("/ui/audit.csv").headers["content-disposition"]


def test_values_from_records_are_escaped():
    evil = dict(AUDIT[0], id=3, actor="<script>alert(1)</script>")
    html = client(Sources(audit=[*AUDIT, evil])).get("/ui/models/fraud").text
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


class HostileRegistry(Registry):
    def __init__(self, url):
        super().__init__()
        self.url = url

    def get_by_alias(self, model, alias):
        got = super().get_by_alias(model, alias)
        if got is not None and alias == "champion":
            got.tags = {**got.tags, "mlgate.promoted.production.url": self.url}
        return got


@pytest.mark.parametrize("url", ["javascript:alert(document.cookie)", " JavaScript:alert(1)", "java\tscript:alert(1)",
                                 "data:text/html,<script>alert(1)</script>", "vbscript:x", "//evil.example/x",
                                 "https://ok.example/a b"])
def test_a_link_from_a_tag_or_record_is_a_link_only_when_it_is_http(url):
    # mlgate.promoted.<env>.url is an MLflow tag anyone with registry access can set, and audit records
    # carry forge URLs: autoescaping keeps a javascript: URL inside href="...", where a click runs it
    src = Sources(audit=[*AUDIT, {"id": 3, "at": "2026-12-01T12:00:00+00:00", "model": "fraud", "environment": "qa",
                                  "version": "4", "outcome": "promotion PR opened", "promotion_pr": url}])
    src.reg = HostileRegistry(url)
    c = client(src)
    for path in ("/ui/models/fraud", "/ui"):
        html = c.get(path).text
        assert "promotion PR" in html
        assert not any(f'href="{v}' in html.lower() for v in ("javascript", " javascript", "java", "data:", "vbscript",
                                                               "//evil", "https://ok.example"))
    src.reg = HostileRegistry("https://github.com/acme/deploy/pull/8")
    assert 'href="https://github.com/acme/deploy/pull/8"' in client(src).get("/ui/models/fraud").text


def test_every_answer_forbids_scripts_framing_and_caching():
    for c, path, status in ((client(), "/ui/models/fraud", 200), (client(), "/ui/audit.csv", 200),
                            (client(token="s3cret"), "/ui", 401), (client(), "/ui/models/nope", 404)):
        r = c.get(path)
        assert r.status_code == status
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"


def test_model_names_are_escaped_in_links_and_csv_cells_never_start_a_formula():
    # MLflow model names may hold '#', '?', '%' and '='; a registry event without a policy audits the payload's name
    evil = dict(AUDIT[0], id=3, model="a#b?c=%d", command=None, event="registry event",
                reasons=["=HYPERLINK(\"https://evil.example\",\"x\")"], actor="@alice")
    c = client(Sources(audit=[*AUDIT, evil]))
    assert '<a href="/ui/models/a%23b%3Fc%3D%25d">' in c.get("/ui").text
    assert c.get("/ui/models/a%23b%3Fc%3D%25d").status_code == 200
    rows = list(csv.DictReader(io.StringIO(c.get("/ui/audit.csv").text)))
    assert rows[0]["reasons"].startswith("'=HYPERLINK") and rows[0]["actor"] == "'@alice"
    assert rows[1]["version"] == "3"


@pytest.mark.parametrize("header, ok", [
    (None, False), ("Bearer s3cret", True), ("Bearer wrong", False), ("bearer s3cret", True),
    ("Basic " + base64.b64encode(b"anyone:s3cret").decode(), True),
    ("Basic " + base64.b64encode(b"s3cret:nope").decode(), False), ("Basic !!!", False), ("Token s3cret", False),
])
def test_token_is_a_bearer_or_the_basic_password(header, ok):
    assert authorized(header, "s3cret") is ok
    c = client(token="s3cret")
    r = c.get("/ui", headers={"Authorization": header} if header else {})
    assert r.status_code == (200 if ok else 401)
    if not ok:
        assert "Basic" in r.headers["www-authenticate"] and "mlgate" not in r.text.split("required")[0][:0]


def test_a_token_with_non_ascii_characters_works_as_bearer_and_basic():
    token = "pässwörd-Ω"
    c = client(token=token)
    bearer = b"Bearer " + token.encode("utf-8")  # what curl -H and browsers send
    basic = b"Basic " + base64.b64encode(("me:" + token).encode("utf-8"))
    for header in (bearer, basic):
        assert c.get("/ui", headers=[(b"authorization", header)]).status_code == 200
    assert c.get("/ui", headers=[(b"authorization", "Bearer pässwörd-Ω".encode("latin-1", "replace"))]).status_code == 401
    assert c.get("/ui", headers=[(b"authorization", b"Bearer ")]).status_code == 401
    assert c.get("/ui", headers=[(b"authorization", b"Basic " + base64.b64encode(b"nocolon"))]).status_code == 401


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1:8081", True), ("localhost:8081", True), ("LOCALHOST", True), ("[::1]:8081", True),
    ("127.0.0.2:8081", True),  # the address it is bound to
    # a page whose name a rebinding DNS server turned into 127.0.0.1 (DNS rebinding)
    ("attacker.example:8081", False), ("127.0.0.1.attacker.example", False), ("localhost.attacker.example:8081", False),
    ("", False),
])
def test_a_token_less_dashboard_answers_loopback_host_names_only(host, ok):
    c = client(allowed_hosts=loopback_hosts("127.0.0.2"))
    r = c.get("/ui/audit.json", headers={"Host": host})
    assert r.status_code == (200 if ok else 400), r.text
    if not ok:
        assert "alice" not in r.text and r.headers["content-security-policy"]  # no data; the usual headers


def test_loopback_hosts_name_the_bound_address_once_with_ipv6_in_brackets():
    assert loopback_hosts("127.0.0.1") == ["localhost", "127.0.0.1", "[::1]"]
    assert loopback_hosts("::1") == ["localhost", "127.0.0.1", "[::1]"]
    assert loopback_hosts("127.0.0.5")[-1] == "127.0.0.5" and loopback_hosts("::ffff:127.0.0.1")[-1] == "[::ffff:127.0.0.1]"


def test_pipeline_order_is_a_stable_topological_order():
    assert pipeline_order([("prod", "staging"), ("staging", "dev"), ("dev", None)]) == ["dev", "staging", "prod"]
    assert pipeline_order([("a", None), ("b", None)]) == ["a", "b"]
    assert pipeline_order([("a", "ghost"), ("b", "a")]) == ["a", "b"]
    assert pipeline_order([("a", "b"), ("b", "a")]) in (["b", "a"], ["a", "b"])  # a cycle never loops


def test_in_flight_ends_when_the_promotion_lands():
    opened = {"model": "m", "environment": "prod", "version": "2", "outcome": "promotion PR opened",
              "promotion_pr": "https://x/pr/1", "at": "t1", "approvers": ["bob"]}
    assert [f.kind for f in in_flight([opened])] == ["promotion PR"]
    assert in_flight([opened, {"model": "m", "environment": "prod", "version": "2", "event": "alias moved", "at": "t2"}]) == []
    wf = {"model": "m", "workflow": "train-abc", "phase": "Running", "at": "t3"}
    assert [f.status for f in in_flight([wf])] == ["Running"]
    assert in_flight([wf, dict(wf, phase="Succeeded")]) == []


def test_models_seen_takes_the_repository_from_commands():
    recs = [{"model": "a", "event": "merged", "repo": "acme/deploy", "forge": "github"},
            {"model": "a", "command": "/promote", "repo": "acme/a", "forge": "github"}, {"model": "b"}]
    assert models_seen(recs) == {"a": ("github", "acme/a"), "b": None}


def test_a_retrain_is_in_flight_until_it_ends_and_its_promotion_pr_until_it_lands():
    sub = {"model": "m", "environment": "prod", "retrain": 7, "event": "retrain submitted", "at": "t1"}
    assert [(f.kind, f.status) for f in in_flight([sub])] == [("retrain", "submitted")]
    failed = dict(sub, event="retrain gates failed", reasons=["auc 0.7 < 0.8"], at="t2")
    assert in_flight([sub, failed]) == []
    promoted = dict(sub, event="retrain promoted", version="5", promotion_pr="https://x/pull/3", at="t3")
    assert [(f.kind, f.url) for f in in_flight([sub, promoted])] == [("promotion PR", "https://x/pull/3")]
    merged = {"model": "m", "environment": "prod", "version": "5", "event": "alias moved", "at": "t4"}
    assert in_flight([sub, promoted, merged]) == []
