"""Multi-task balancing benchmark (issue 12): every method's encoder heads on a held-out file, against the
uncertainty-weighted router and the single-task encoders, with paired-bootstrap CIs and relative step time.

Standalone (`python -m bench --only mtl` runs the same protocol, `bench/mtl_protocol.py`, inside the bench):

    python -m bench.mtl --config configs/harbor.yaml --test data/harbor/test.csv --workdir runs/mtl \
        --methods uncertainty,gradnorm,pcgrad --single urgency --json bench/mtl_results.json

Each method is `ticket-router train --config CONFIG --lexical-weight 0 <its flags>` into WORKDIR/<method>
(reused when its metrics.json exists and `--reuse` is given), trained in this process, scored on the test file
with the encoder heads alone and fused with n-gram heads fitted once on the training file (weight
`--fuse-weight`), exactly as `Router` fuses them. Single-task encoders: the same config with one task, its labeled
rows only, equal weights (as `ticket-router baselines`). Step time is training seconds per optimizer step
(evaluation included, conflict logging as configured) relative to the reference method's; it is only comparable
between runs on an equally loaded machine, so the JSON records the load average beside it. `--train` and
`--validation` replace the config's files (the support tickets have no test file: train on part of train.csv
and test on the rest).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from ticket_router.data import join_text_columns, read_table
from ticket_router.errors import InputError
from ticket_router.training import prepare_data

from bench.mtl_protocol import METHODS, Reuse, base_config, protocol_from_args, run_config, run_protocol, train


def routing_cost(config, texts: list[str], layer_counts: list[int], repeats: int = 3) -> dict:
    """Encoder-head routing time (ms per ticket, batch 32, median of `repeats`) per task_specific_layers K."""
    import torch

    from ticket_router.backbone import load_backbone
    from ticket_router.modeling import MultiTaskRouterModel

    specs = prepare_data(config).specs
    result = {}
    for k in layer_counts:
        encoder, tokenizer = load_backbone(config.backbone)
        options = dict(text_columns=config.text_columns, pooling=config.pooling, max_length=config.max_length)
        model = (MultiTaskRouterModel.branched_from_backbone(encoder, specs, k, **options) if k
                 else MultiTaskRouterModel.from_backbone(encoder, specs, **options)).eval()
        batches = [tokenizer(texts[i:i + 32], padding=True, truncation=True, max_length=config.max_length,
                             return_tensors="pt") for i in range(0, len(texts), 32)]
        timings = []
        with torch.inference_mode():
            for _ in range(repeats + 1):  # the first pass warms up
                started = time.perf_counter()
                for batch in batches:
                    batch.pop("token_type_ids", None)
                    model(**batch)
                timings.append((time.perf_counter() - started) * 1000 / len(texts))
        result[str(k)] = {"ms_per_ticket": round(float(np.median(timings[1:])), 3),
                          "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
    base = result[str(layer_counts[0])]["ms_per_ticket"]
    for entry in result.values():
        entry["vs_first"] = round(entry["ms_per_ticket"] / base, 3)
    return result


def step_time(args: argparse.Namespace) -> dict:
    """Seconds per optimizer step of each method over `--step-time-steps` steps (no evaluation, no conflict log),
    trained back to back from the same start; relative to the first method."""
    result = {}
    base = base_config(args)
    for method in args.step_time.split(","):
        output = Path(args.workdir) / "step-time" / method
        flags = [*METHODS[method], "--max-steps", str(args.step_time_steps), "--validation", "",
                 "--gradient-conflict-steps", "0"]
        metrics = train(run_config(base, output, flags), Reuse.NONE)
        result[method] = {"seconds_per_step": round(metrics["train_runtime_s"] / metrics["global_steps"], 3),
                          "load_average_after": metrics["load_average_after"]}
    first = next(iter(result.values()))["seconds_per_step"]
    for entry in result.values():
        entry["vs_first"] = round(entry["seconds_per_step"] / first, 3)
    return result


_TIMING_KEYS = ("step_time", "routing_cost", "routing_cost_load_average")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/harbor.yaml")
    parser.add_argument("--test", default="data/harbor/test.csv")
    parser.add_argument("--train", help="training file instead of the config's (e.g. 80%% of train.csv)")
    parser.add_argument("--validation", help="validation file instead of the config's")
    parser.add_argument("--workdir", default="runs/mtl")
    parser.add_argument("--methods", default="uncertainty,gradnorm,pcgrad,dwa,famo",
                        help=f"comma-separated, the first is the reference; known: {', '.join(METHODS)}")
    parser.add_argument("--single", default="urgency", help="tasks whose single-task encoder to train ('' for none)")
    parser.add_argument("--fuse-weight", type=float, default=0.5, help="n-gram share in the fused scores (0: none)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--reuse", action="store_true", help="keep finished trainings in WORKDIR")
    parser.add_argument("--json", default="bench/mtl_results.json")
    parser.add_argument("--step-time", default="", help="e.g. uncertainty,gradnorm,pcgrad: time short trainings")
    parser.add_argument("--step-time-steps", type=int, default=30)
    parser.add_argument("--routing-cost", default="", help="e.g. 0,1,2: time routing per task_specific_layers K")
    parser.add_argument("extra", nargs="*", help="more train flags for every run, after --")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        results = measure(args)
    except InputError as error:
        print(f"bench.mtl: error: {error}", file=sys.stderr)
        return 2
    Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    summary = {m: r.get("encoder") for m, r in results["methods"].items()} | {"single": results["single"]}
    print(json.dumps(summary | {key: results.get(key) for key in ("routing_cost", "step_time")}, indent=1))
    return 0


def measure(args: argparse.Namespace) -> dict:
    """The methods, then the timings asked for, merged into the earlier results of --json."""
    earlier = json.loads(Path(args.json).read_text()) if Path(args.json).is_file() else {}
    if args.methods:  # a method run keeps the earlier timings, unless this call measures them again
        timings = {key: value for key, value in earlier.items() if key in _TIMING_KEYS}
        results = run_protocol(protocol_from_args(args)) | timings
    else:  # a timing-only call adds to the earlier results
        results = earlier or {"methods": {}, "single": {}}
    if args.step_time:
        results["step_time"] = step_time(args)
    if args.routing_cost:
        config = base_config(args)
        test = read_table(args.test)
        texts = join_text_columns(test, config.text_columns, args.test)[:256]
        results["routing_cost"] = routing_cost(config, texts, [int(k) for k in args.routing_cost.split(",")])
        results["routing_cost_load_average"] = os.getloadavg()
    return results


if __name__ == "__main__":
    raise SystemExit(main())
