"""Routing speed in process (issue 14, item 4 CPU): PyTorch vs ONNX fp32 vs ONNX int8 on the same tickets.

    python -m bench.routing_speed --torch runs/st --fp32 runs/st-fp32 --int8 runs/st-int8 \
        --n 400 --repeats 5 --threads 2 --json bench/routing_speed.json [--also int8_before=runs/st-int8-old]

Every router is loaded once, then each repeat times every model in turn (torch, fp32, int8, torch, fp32, ...), so
a burst of load from other processes on this shared machine hits all of them alike; the median of the repeats is
reported with its spread. Two parts per model: the encoder heads alone (`Router.encoder_proba`) and as routed
(`Router.predict_proba`: fused with the n-gram heads, calibrated). PyTorch and ONNX Runtime use the same number of
intra-op threads (`--threads`), idle threads asleep (OMP_WAIT_POLICY=PASSIVE, as `serve`). Quality: macro-F1 per head on the labeled tickets timed, and the share of tickets
whose top-1 label equals PyTorch's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "support-tickets" / "validation.csv"
PARTS = ("encoder", "routed")


@dataclass
class PartResult:
    """One model, one part: tickets/s of every repeat and the quality of the last one."""

    seconds: list[float] = field(default_factory=list)
    macro_f1: dict[str, float] = field(default_factory=dict)
    agreement_with_torch: dict[str, float] = field(default_factory=dict)

    def tickets_per_s(self, n: int) -> float:
        return n / statistics.median(self.seconds)


def _load(models: dict[str, str], threads: int) -> dict:
    import torch

    from ticket_router.router import Router

    torch.set_num_threads(threads)  # the process-wide torch setting; ONNX Runtime gets the same per session
    return {name: Router.from_pretrained(path, device="cpu", threads=threads) for name, path in models.items()}


def _time(router, part: str, texts: list[str], batch_size: int):
    method = router.encoder_proba if part == "encoder" else router.predict_proba
    start = time.perf_counter()
    proba = method(texts, batch_size)
    return proba, time.perf_counter() - start


def measure(models: dict[str, str], data: str, n: int, batch_size: int, repeats: int, threads: int) -> dict:
    """Alternating timed passes over the first `n` labeled tickets of `data`; the first model is the reference."""
    from ticket_router.data import encode_labels, read_table
    from ticket_router.metrics import multitask_metrics

    routers = _load(models, threads)
    first = next(iter(routers.values()))
    table = read_table(data)
    table = table.select(range(min(n, len(table))))
    texts, gold = first.texts_from_table(table, data), encode_labels(table, first.specs, data)
    for router in routers.values():  # warm-up: ORT's first run, allocator growth, lazy imports
        router.predict_proba(texts[:batch_size], batch_size)
    results = {name: {part: PartResult() for part in PARTS} for name in routers}
    last = {}
    for repeat in range(repeats):
        for name, router in routers.items():
            for part in PARTS:
                last[name, part], seconds = _time(router, part, texts, batch_size)
                results[name][part].seconds.append(seconds)
        print(f"repeat {repeat + 1}/{repeats}: " + ", ".join(
            f"{name} {len(texts) / results[name]['routed'].seconds[-1]:.1f}/s" for name in routers), flush=True)
    reference = next(iter(routers))
    for name, router in routers.items():
        for part in PARTS:
            proba, ref = last[name, part], last[reference, part]
            scores = multitask_metrics(gold, [proba[s.name] for s in router.specs], router.task_names)
            results[name][part].macro_f1 = {t: round(v["macro_f1"], 4) for t, v in scores["tasks"].items()}
            results[name][part].agreement_with_torch = {
                t: round(float((proba[t].argmax(1) == ref[t].argmax(1)).mean()), 4) for t in proba}
    return {"n": len(texts), "batch_size": batch_size, "repeats": repeats, "threads": threads, "reference": reference,
            "models": {name: {part: asdict(r) | {"tickets_per_s": round(r.tickets_per_s(len(texts)), 1)}
                              for part, r in parts.items()} for name, parts in results.items()}}


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render(result: dict) -> str:
    """The Markdown table BENCHMARKS.md quotes: median tickets/s, ratio to the reference, F1 and agreement."""
    models, reference = result["models"], result["reference"]
    tasks = list(models[reference]["routed"]["macro_f1"])
    lines = [_row(["model", "part", "tickets/s (median)", "min-max", f"x {reference}"]
                  + [f"{t} macro-F1" for t in tasks] + [f"{t} top-1 = {reference}" for t in tasks]),
             _row(["---"] * (5 + 2 * len(tasks)))]
    for part in PARTS:
        base = models[reference][part]["tickets_per_s"]
        for name, parts in models.items():
            r, n = parts[part], result["n"]
            spread = f"{n / max(r['seconds']):.1f}-{n / min(r['seconds']):.1f}"
            lines.append(_row([name, "encoder heads alone" if part == "encoder" else "routed (fused)",
                               r["tickets_per_s"], spread, f"{r['tickets_per_s'] / base:.2f}"]
                              + [f"{r['macro_f1'][t]:.4f}" for t in tasks]
                              + [f"{r['agreement_with_torch'][t]:.3f}" for t in tasks]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", required=True, help="PyTorch model directory (the reference).")
    parser.add_argument("--fp32", help="Its fp32 export.")
    parser.add_argument("--int8", help="Its int8 export.")
    parser.add_argument("--also", action="append", default=[], metavar="NAME=DIR",
                        help="Another model timed in the same rotation (e.g. an export made by an older version).")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="Labeled tickets (default: shared validation).")
    parser.add_argument("--n", type=int, default=400, help="First N tickets of --data.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="Intra-op threads, every model.")
    parser.add_argument("--json", help="Write the results here.")
    args = parser.parse_args(argv)
    # As `ticket-router serve` does, before torch loads OpenMP: idle OpenMP threads sleep instead of spinning, which
    # on this shared CPU halved PyTorch's tickets/s (BENCHMARKS.md); the comparison is with PyTorch at its best.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    models = {name: path for name, path in (("torch", args.torch), ("onnx_fp32", args.fp32), ("onnx_int8", args.int8))
              if path}
    for spec in args.also:
        name, _, path = spec.partition("=")
        if not path:
            parser.error(f"--also {spec!r}: expected NAME=DIR")
        models[name] = path
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result = measure(models, args.data, args.n, args.batch_size, args.repeats, args.threads)
    result |= {"command": " ".join(["python -m bench.routing_speed", *(argv or sys.argv[1:])]), "started": started,
               "cpus": os.cpu_count(), "load_average_before": load_before,
               "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
