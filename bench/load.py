#!/usr/bin/env python
"""Export and serving benchmark (issue 14): PyTorch vs ONNX fp32 vs ONNX int8, in process and over HTTP.

Sections (`--only NAME[,NAME]`):

  startup     wall time of `ticket-router predict` for one ticket from stdin, per model (median of --startup-runs)
  routing     tickets/s over the validation file, encoder heads alone and as routed (fused with the lexical
              heads), the lexical heads alone (the split), macro-F1 per head and top-1 agreement with PyTorch
  load        `ticket-router serve` on 127.0.0.1 per model, one ticket per request, at concurrency 1, 8 and 32:
              p50/p95/p99 latency, tickets/s, errors; each level bounded by --requests and --seconds
  soak        the last model served at concurrency 8 for --soak-seconds: resident memory before and after

Loopback only; every phase is bounded in requests and time. Writes JSON (--output, default bench/out/load.json).
Example: python -m bench.load --torch runs/st --fp32 runs/st-fp32 --int8 runs/st-int8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import numpy as np

DEFAULT_DATA = REPO.parent / "shared" / "data" / "support-tickets" / "validation.csv"
SECTIONS = ("startup", "routing", "load", "soak")


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ticket_router", *args]


def env() -> dict:
    return os.environ | {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


# --------------------------------------------------------------------------- start-up
def startup(models: dict[str, str], runs: int) -> dict:
    """Seconds from process start to one routed ticket on stdout, `predict --input -`."""
    out = {}
    for name, model in models.items():
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            result = subprocess.run(cli("-q", "predict", "--model", model, "--input", "-", "--output", "-"),
                                    input="Checkout is down for all stores since 9am\n", capture_output=True,
                                    text=True, env=env(), timeout=300)
            times.append(time.perf_counter() - start)
            if result.returncode != 0:
                raise RuntimeError(f"predict on {model} failed: {result.stderr[-500:]}")
        out[name] = {"median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times]}
        print(f"startup {name}: {out[name]}", flush=True)
    return out


# --------------------------------------------------------------------------- in-process routing
def _timed(fn, *args, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return result, best


def routing(models: dict[str, str], data: str, batch_size: int, repeats: int) -> dict:
    from ticket_router.data import encode_labels, read_table
    from ticket_router.metrics import multitask_metrics
    from ticket_router.router import Router

    table = read_table(data)
    out, reference = {}, {}
    for name, model in models.items():
        router = Router.from_pretrained(model, device="cpu")
        texts = router.texts_from_table(table, data)
        gold = encode_labels(table, router.specs, data)
        router.route(texts[:batch_size], batch_size=batch_size)  # warm-up (allocations, ORT first run)
        row = {"n": len(texts), "batch_size": batch_size}
        if router.lexical is not None:
            _, seconds = _timed(router.lexical.predict_proba, texts, repeats=repeats)
            row["lexical_alone"] = {"tickets_per_s": round(len(texts) / seconds, 1), "ms_per_ticket": round(1000 * seconds / len(texts), 3)}
        for part, method in (("encoder", router.encoder_proba), ("routed", router.predict_proba)):
            proba, seconds = _timed(method, texts, batch_size, repeats=repeats)
            scores = multitask_metrics(gold, [proba[s.name] for s in router.specs], router.task_names)
            top1 = {task: p.argmax(1) for task, p in proba.items()}
            reference.setdefault(part, top1)  # the first model (PyTorch) is the reference
            row[part] = {
                "tickets_per_s": round(len(texts) / seconds, 1), "ms_per_ticket": round(1000 * seconds / len(texts), 3),
                "macro_f1": {t: round(v["macro_f1"], 4) for t, v in scores["tasks"].items()},
                "agreement_with_torch": {t: round(float((top1[t] == reference[part][t]).mean()), 4) for t in top1},
            }
        out[name] = row
        print(f"routing {name}: {json.dumps(row)}", flush=True)
        del router
    return out


# --------------------------------------------------------------------------- HTTP load
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`ticket-router serve` in a child process on a free loopback port."""

    def __init__(self, model: str, max_batch: int, max_wait_ms: float):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            cli("-q", "serve", "--model", model, "--port", str(self.port), "--max-batch", str(max_batch),
                "--max-wait-ms", str(max_wait_ms)), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self, timeout: float = 300) -> float:
        import httpx

        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: {self.process.stderr.read().decode()[-1000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("serve did not become ready")

    def rss_mb(self) -> float:
        import psutil

        return round(psutil.Process(self.process.pid).memory_info().rss / 2**20, 1)

    def stop(self) -> int:
        self.process.terminate()  # SIGTERM: graceful shutdown
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return -9


async def _drive(url: str, tickets: list[dict], concurrency: int, requests: int, seconds: float) -> dict:
    """`concurrency` clients, one ticket per request, until `requests` are sent or `seconds` pass."""
    import httpx

    latencies, errors, sent = [], [], 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client):
        nonlocal sent
        while sent < requests and time.perf_counter() < deadline:
            ticket = tickets[sent % len(tickets)]
            sent += 1
            start = time.perf_counter()
            try:
                response = await client.post(f"{url}/v1/route", json={"tickets": [ticket]})
                if response.status_code != 200 or len(response.json()["results"]) != 1:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as error:
                errors.append(repr(error))
            latencies.append(time.perf_counter() - start)

    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": len(latencies), "errors": len(errors), "error_samples": errors[:3],
            "wall_s": round(wall, 2), "tickets_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "mean_ms": round(float(ms.mean()), 1)}


def _tickets(data: str, n: int = 200) -> list[dict]:
    import csv

    with open(data, newline="", encoding="utf-8") as handle:
        rows = [row for _, row in zip(range(n), csv.DictReader(handle))]
    return [{"id": str(i), "subject": row.get("subject", ""), "body": row.get("body", "")} for i, row in enumerate(rows)]


def _batch_stats(url: str) -> dict:
    import re

    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    value = {name: float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))
             for name in ("ticket_router_batch_tickets_sum", "ticket_router_batch_tickets_count")}
    return {"batches": int(value["ticket_router_batch_tickets_count"]),
            "mean_batch": round(value["ticket_router_batch_tickets_sum"] / max(1, value["ticket_router_batch_tickets_count"]), 2)}


def load(models: dict[str, str], data: str, levels: list[int], requests: int, seconds: float, args) -> dict:
    tickets, out = _tickets(data), {}
    for name, model in models.items():
        server = Server(model, args.max_batch, args.max_wait_ms)
        try:
            ready_s = server.wait_ready()
            asyncio.run(_drive(server.url, tickets, 2, 10, 30))  # warm-up
            row = {"ready_s": round(ready_s, 2), "rss_mb_ready": server.rss_mb(), "levels": []}
            for level in levels:
                result = asyncio.run(_drive(server.url, tickets, level, requests, seconds))
                result |= {"load_average": [round(x, 2) for x in os.getloadavg()]}
                row["levels"].append(result)
                print(f"load {name}: {json.dumps(result)}", flush=True)
            row["batches"] = _batch_stats(server.url)
            row["rss_mb_after"] = server.rss_mb()
        finally:
            row["exit_status_after_sigterm"] = server.stop()
        out[name] = row
    return out


def soak(name: str, model: str, data: str, seconds: float, args) -> dict:
    tickets = _tickets(data)
    server = Server(model, args.max_batch, args.max_wait_ms)
    try:
        server.wait_ready()
        asyncio.run(_drive(server.url, tickets, 8, 50, 60))  # warm-up: allocations settle first
        before = server.rss_mb()
        result = asyncio.run(_drive(server.url, tickets, 8, 10**9, seconds))
        result |= {"model": name, "rss_mb_before": before, "rss_mb_after": server.rss_mb(), "seconds": seconds,
                   "load_average": [round(x, 2) for x in os.getloadavg()]}
    finally:
        result["exit_status_after_sigterm"] = server.stop()
    print(f"soak: {json.dumps(result)}", flush=True)
    return result


# --------------------------------------------------------------------------- tables
def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render(results: dict) -> str:
    """Markdown tables of a results JSON (BENCHMARKS.md quotes them)."""
    lines = []
    if "startup" in results:
        lines += ["| model | `predict` of one ticket from stdin, wall s (median) | runs |", "| --- | --- | --- |"]
        lines += [_row([name, r["median_s"], ", ".join(map(str, r["runs_s"]))]) for name, r in results["startup"].items()]
        lines.append("")
    if "routing" in results:
        routing = results["routing"]
        tasks = list(next(iter(routing.values()))["encoder"]["macro_f1"])
        lines += [_row(["model", "part", "tickets/s", "ms/ticket"] + [f"{t} macro-F1" for t in tasks]
                       + [f"{t} top-1 = torch" for t in tasks]), _row(["---"] * (4 + 2 * len(tasks)))]
        for name, row in routing.items():
            for part in ("encoder", "routed"):
                r = row[part]
                lines.append(_row([name, "encoder heads alone" if part == "encoder" else "routed (fused)",
                                   r["tickets_per_s"], r["ms_per_ticket"]] + [f"{r['macro_f1'][t]:.4f}" for t in tasks]
                                  + [f"{r['agreement_with_torch'][t]:.3f}" for t in tasks]))
            if "lexical_alone" in row:
                lex = row["lexical_alone"]
                lines.append(_row([name, "lexical heads alone", lex["tickets_per_s"], lex["ms_per_ticket"]]
                                  + [""] * (2 * len(tasks))))
        lines.append("")
    if "load" in results:
        lines += ["| model | concurrency | requests | errors | tickets/s | p50 ms | p95 ms | p99 ms | load average |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, row in results["load"].items():
            for r in row["levels"]:
                lines.append(_row([name, r["concurrency"], r["requests"], r["errors"], r["tickets_per_s"], r["p50_ms"],
                                   r["p95_ms"], r["p99_ms"], r["load_average"][0]]))
        lines += ["", "| model | ready after s | RSS ready MB | RSS after the levels MB | micro-batches | mean tickets per batch "
                  "| exit status after SIGTERM |", "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [_row([name, r["ready_s"], r["rss_mb_ready"], r["rss_mb_after"], r["batches"]["batches"],
                        r["batches"]["mean_batch"], r["exit_status_after_sigterm"]]) for name, r in results["load"].items()]
        lines.append("")
    if "soak" in results:
        r = results["soak"]
        lines += ["| soak | seconds | concurrency | requests | errors | tickets/s | p50 / p99 ms | RSS before -> after MB "
                  "| exit status after SIGTERM |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
                  _row([r["model"], r["seconds"], r["concurrency"], r["requests"], r["errors"], r["tickets_per_s"],
                        f"{r['p50_ms']} / {r['p99_ms']}", f"{r['rss_mb_before']} -> {r['rss_mb_after']}",
                        r["exit_status_after_sigterm"]]), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", help="PyTorch model directory (required unless --render).")
    parser.add_argument("--fp32", help="Its fp32 export (ticket-router export).")
    parser.add_argument("--int8", help="Its int8 export (ticket-router export --quantize int8).")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="Labeled tickets (default: shared validation).")
    parser.add_argument("--only", help=f"Comma-separated sections of {', '.join(SECTIONS)}.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="Routing passes per measurement (best kept).")
    parser.add_argument("--startup-runs", type=int, default=3)
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--requests", type=int, default=400, help="Requests per concurrency level, at most.")
    parser.add_argument("--seconds", type=float, default=45, help="Seconds per concurrency level, at most.")
    parser.add_argument("--soak-seconds", type=float, default=300)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--output", default=str(REPO / "bench" / "out" / "load.json"))
    parser.add_argument("--render", metavar="JSON", help="Only print the Markdown tables of a results file.")
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(Path(args.render).read_text())))
        return 0
    if not args.torch:
        parser.error("--torch is required")
    models = {name: path for name, path in (("torch", args.torch), ("onnx_fp32", args.fp32), ("onnx_int8", args.int8))
              if path}
    sections = args.only.split(",") if args.only else list(SECTIONS)
    output = Path(args.output)
    results = json.loads(output.read_text()) if output.is_file() else {}
    results["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    results["machine_start"] = machine()
    if "startup" in sections:
        results["startup"] = startup(models, args.startup_runs)
    if "routing" in sections:
        results["routing"] = routing(models, args.data, args.batch_size, args.repeats)
    if "load" in sections:
        levels = [int(x) for x in args.levels.split(",")]
        results["load"] = load(models, args.data, levels, args.requests, args.seconds, args)
    if "soak" in sections:
        name = list(models)[-1]
        results["soak"] = soak(name, models[name], args.data, args.soak_seconds, args)
    results["machine_end"] = machine()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
