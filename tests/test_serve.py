"""`ticket-router serve`: every endpoint, every error status and micro-batching, through FastAPI's TestClient."""

from __future__ import annotations

import json
import re
import threading

import pytest

from tiny_router import build_router_dir, harbor_texts
from ticket_router.router import Router
from ticket_router.serve import ServeSettings, create_app

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")
from fastapi.testclient import TestClient  # noqa: E402

TICKETS = [{"id": f"T{i}", "subject": text.split("\n")[0], "body": text.split("\n", 1)[-1]}
           for i, text in enumerate(harbor_texts(6))]


@pytest.fixture(scope="module")
def router(bert_dir, tmp_path_factory):
    return Router.from_pretrained(build_router_dir(bert_dir, tmp_path_factory.mktemp("router")), device="cpu")


def _client(router, **settings):
    return TestClient(create_app(router, "tiny", ServeSettings(**settings)))


def _metric(text: str, name: str) -> float:
    """Sum of a metric's samples in Prometheus text (all label sets)."""
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, flags=re.M))


def test_route_answers_one_predict_record_per_ticket_in_input_order(router):
    expected = router.route([f"{t['subject']}\n{t['body']}" for t in TICKETS])
    with _client(router) as client:
        response = client.post("/v1/route", json={"tickets": TICKETS})
        assert response.status_code == 200
        results = response.json()["results"]
        assert [r["id"] for r in results] == [t["id"] for t in TICKETS]
        assert [{k: v for k, v in r.items() if k != "id"} for r in results] == json.loads(json.dumps(expected))
        single = client.post("/v1/route", json={"text": "Card declined at checkout"}).json()["results"]
        assert len(single) == 1 and set(single[0]) == {"category", "urgency", "queue", "route", "review_reasons"}
        only_body = client.post("/v1/route", json={"tickets": [{"body": "printer jam"}]})  # blank parts skipped
        assert only_body.status_code == 200 and "id" not in only_body.json()["results"][0]
        long_text = client.post("/v1/route", json={"text": "refund please " * 3000})  # truncated as in predict
        assert long_text.status_code == 200


def test_health_model_metrics_and_docs(router):
    with _client(router) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        model = client.get("/v1/model").json()
        assert [t["name"] for t in model["tasks"]] == ["category", "urgency", "queue"]
        assert model["tasks"][1]["labels"] == list(router.labels["urgency"])
        assert model["backend"] == "torch" and model["text_columns"] == ["subject", "body"] and model["version"]
        client.post("/v1/route", json={"tickets": TICKETS[:3]})
        client.post("/v1/route", content=b"{")
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        assert 'ticket_router_requests_total{path="/v1/route",status="200"} 1.0' in text
        assert 'ticket_router_requests_total{path="/v1/route",status="400"} 1.0' in text
        assert _metric(text, "ticket_router_request_seconds_count") >= 2
        assert _metric(text, "ticket_router_tickets_total") == 3
        assert _metric(text, "ticket_router_batch_tickets_sum") == 3
        assert client.get("/openapi.json").json()["paths"]["/v1/route"]["post"]["requestBody"]
        assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("body, status, message", [
    (b'{"tickets": [', 400, "malformed JSON"),
    (b'"just a string"', 422, "expected a JSON object"),
    (b'{"tickets": [], "text": "x"}', 422, "expected a JSON object"),
    (b'{"tickets": []}', 422, "non-empty list"),
    (b'{"text": "   "}', 422, "non-empty string"),
    (b'{"tickets": [{"id": 1, "subject": "", "body": null}]}', 422, "tickets[0]: no text"),
    (b'{"tickets": [{"subject": "ok"}, {"id": 2}]}', 422, "tickets[1]: no text"),
    (b'{"tickets": [{"subject": ["not", "text"]}]}', 422, "tickets[0].subject: expected a string"),
    (b'{"tickets": ["plain string"]}', 422, "tickets[0]: expected an object"),
    (json.dumps({"tickets": [{"body": "x"}] * 5}).encode(), 413, "5 tickets: at most 4"),
    (json.dumps({"text": "x" * 3000}).encode(), 413, "at most 2048"),
])
def test_bad_requests_get_a_status_and_one_line_message(router, body, status, message):
    with _client(router, max_tickets=4, max_body_bytes=2048) as client:
        response = client.post("/v1/route", content=body, headers={"content-type": "application/json"})
        assert response.status_code == status
        error = response.json()["error"]
        assert message in error and "\n" not in error
        assert client.get("/healthz").json() == {"status": "ok"}  # and the service keeps serving


def test_concurrent_requests_coalesce_into_one_batch(router):
    # A long wait makes the three requests meet in the first micro-batch.
    with _client(router, max_wait_ms=1500, max_batch=64) as client:
        barrier, answers = threading.Barrier(3), []

        def post(i):
            barrier.wait()
            answers.append(client.post("/v1/route", json={"tickets": TICKETS[i:i + 2]}).json()["results"])

        threads = [threading.Thread(target=post, args=(i,)) for i in (0, 2, 4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        text = client.get("/metrics").text
    assert sorted(r["id"] for answer in answers for r in answer) == [t["id"] for t in TICKETS]
    assert _metric(text, "ticket_router_batch_tickets_count") == 1  # one router call...
    assert _metric(text, "ticket_router_batch_tickets_sum") == 6  # ...for all six tickets
    assert 'ticket_router_batch_requests_bucket{le="2.0"} 0.0' in text  # of the three requests


def test_decisions_are_counted_per_head_when_records_carry_one(router):
    class WithPolicy:  # records as a routing policy (calibration issue) adds them: a decision per head
        def __getattr__(self, name):
            return getattr(router, name)

        def route(self, texts, batch_size=32):
            return [record | {"urgency": record["urgency"] | {"decision": "review"}, "route": "review"}
                    for record in router.route(texts, batch_size)]

    with _client(WithPolicy()) as client:
        client.post("/v1/route", json={"tickets": TICKETS[:2]})
        text = client.get("/metrics").text
    assert 'ticket_router_decisions_total{decision="review",task="urgency"} 2.0' in text
    assert 'ticket_router_routes_total{route="review"} 2.0' in text


def test_model_reports_the_policy_thresholds_votes_and_max_targets(router, tmp_path):
    heads = {"urgency": {"threshold": 0.7, "n": 10},  # saved before votes existed: it votes
             "queue": {"threshold": None, "n": 10, "votes": False, "max_target": 0.62}}
    (tmp_path / "policy.json").write_text(json.dumps({"heads": heads}))
    with TestClient(create_app(router, tmp_path)) as client:
        info = client.get("/v1/model").json()
    assert info["thresholds"] == {"urgency": 0.7, "queue": None}
    assert info["votes"] == {"urgency": True, "queue": False}
    assert info["max_target"] == {"urgency": None, "queue": 0.62}


def test_serves_an_onnx_export(router, tmp_path):
    from ticket_router.export import export_router

    source = tmp_path / "source"
    router.model.save_pretrained(source)
    router.tokenizer.save_pretrained(source)
    router.lexical.save(source)
    export_router(source, tmp_path / "int8", quantize="int8")
    with _client(Router.from_pretrained(tmp_path / "int8")) as client:
        assert client.get("/v1/model").json()["quantization"] == "int8"
        results = client.post("/v1/route", json={"tickets": TICKETS}).json()["results"]
    assert len(results) == len(TICKETS) and results[0]["id"] == "T0"


@pytest.mark.slow
def test_sigterm_lets_the_request_in_flight_finish(bert_dir, tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    model = build_router_dir(bert_dir, tmp_path / "router")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # A long batching window keeps the request in flight while the signal arrives.
    server = subprocess.Popen([sys.executable, "-m", "ticket_router", "-q", "serve", "--model", str(model),
                               "--port", str(port), "--max-wait-ms", "3000"], env=os.environ | {"PYTHONPATH": "."})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        answers = []
        thread = threading.Thread(target=lambda: answers.append(
            httpx.post(f"{url}/v1/route", json={"tickets": TICKETS[:2]}, timeout=60)))
        thread.start()
        time.sleep(1.0)
        server.send_signal(signal.SIGTERM)
        thread.join(timeout=60)
        # uvicorn re-raises the signal once it has shut down gracefully: the exit status says SIGTERM.
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        server.kill()
    assert answers and answers[0].status_code == 200 and len(answers[0].json()["results"]) == 2
