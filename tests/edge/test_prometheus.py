"""The Prometheus adapter against a real Prometheus (and a tiny server for the failure answers)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlgate.core.errors import InfraError
from mlgate.edge.prometheus import Prometheus, QueryError, parse_response
from tests.flows.conftest import wait_for_value
from tests.conftest import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(prometheus, exporter):
    exporter.serve("promtest", "1", requests=42, error_ratio=0.5)
    exporter.serve("promtest", "2", requests=7, error_ratio=0.0)
    wait_for_value(prometheus, 'sum(model_requests{model="promtest"})', 49)
    with Prometheus(prometheus, timeout=5) as p:
        yield p


def test_vector_scalar_and_empty_results(served):
    r = served.query('model_requests{model="promtest",version="1"}')
    assert r.result_type == "vector" and len(r.samples) == 1
    assert r.samples[0].labels["version"] == "1" and r.samples[0].value == 42
    assert served.value("1 + 1") == 2.0 and served.query("1 + 1").result_type == "scalar"
    assert served.value('model_requests{model="no-such-model"}') is None  # no series: no data
    assert served.value("0/0") is None  # NaN (no traffic) is no data, not a number to judge


def test_several_series_must_be_aggregated(served):
    with pytest.raises(QueryError, match=r"returned 2 series .*aggregate it to one"):
        served.value('model_requests{model="promtest"}')
    assert served.value('sum(model_requests{model="promtest"})') == 49


def test_range_vector_counts_raw_points(served):
    r = served.query('model_requests{model="promtest",version="1"}[10s]')
    assert r.result_type == "matrix" and r.point_count >= 1 and r.samples[0].value == 42


def test_invalid_promql_names_the_query(served):
    with pytest.raises(QueryError, match=r"rejected query 'sum\(': .*parse error"):
        served.value("sum(")


def test_unreachable_server_names_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(InfraError, match=rf"Prometheus at {url}/api/v1/query is unreachable: ConnectError"):
        Prometheus(url, timeout=2).value("up")


class _Answers(BaseHTTPRequestHandler):
    status = 503
    body = b'{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}'
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", 0))
        type(self).seen.append({"auth": self.headers.get("Authorization"), "body": self.rfile.read(length).decode()})
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def fake():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Answers.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}", _Answers
    server.shutdown()
    server.server_close()


def test_server_errors_are_infrastructure_errors_and_the_token_is_sent_not_shown(fake):
    url, answers = fake
    answers.status, answers.body = 503, b'{"status":"error","errorType":"timeout","error":"query timed out"}'
    with pytest.raises(InfraError) as e:
        Prometheus(url, token="s3cr3t-token").value("up")
    assert "answered HTTP 503" in str(e.value) and "query timed out" in str(e.value)
    assert "s3cr3t" not in str(e.value)
    assert answers.seen[0]["auth"] == "Bearer s3cr3t-token" and "query=up" in answers.seen[0]["body"]
    answers.status, answers.body = 200, b"<html>not prometheus</html>"
    with pytest.raises(InfraError, match="not the query API's JSON"):
        Prometheus(url).value("up")


def test_parse_response_reads_the_documented_shapes():
    body = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"__name__": "x", "a": "b"}, "value": [1700000000.5, "+Inf"]}]}, "warnings": ["partial"]}
    r = parse_response(json.loads(json.dumps(body)))
    assert r.samples[0].value == float("inf") and r.warnings == ("partial",)
    with pytest.raises(ValueError):
        parse_response({"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "x"]}]}})
