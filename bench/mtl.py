"""Multi-task balancing benchmark (issue 12): every method's encoder heads on a held-out file, against the
uncertainty-weighted router and the single-task encoders, with paired-bootstrap CIs and relative step time.

Standalone (the `make bench` harness may call `run` later):

    python -m bench.mtl --config configs/harbor.yaml --test data/harbor/test.csv --workdir runs/mtl \
        --methods uncertainty,gradnorm,pcgrad --single urgency --json bench/mtl_results.json

Each method is `ticket-router train --config CONFIG --lexical-weight 0 <its flags>` into WORKDIR/<method>
(reused when its metrics.json exists and `--reuse` is given), scored on the test file with the encoder heads
alone and fused with n-gram heads fitted once on the training file (weight `--fuse-weight`), exactly as
`Router` fuses them. Single-task encoders: the same config with one task, its labeled rows only, equal weights
(as `ticket-router baselines`). Step time is training seconds per optimizer step (evaluation included, conflict
logging as configured) relative to the reference method's; it is only comparable between runs on an equally
loaded machine, so the JSON records the load average beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from ticket_router.config import build_config
from ticket_router.data import encode_labels, join_text_columns, read_table
from ticket_router.lexical import LexicalHeads, LexicalSettings
from ticket_router.router import Router
from ticket_router.stats import macro_f1, paired_bootstrap_diff_ci
from ticket_router.training import prepare_data

# name -> extra `ticket-router train` flags (on top of the config and --lexical-weight 0)
METHODS: dict[str, list[str]] = {
    "uncertainty": [],
    "equal": ["--loss-weighting", "equal"],
    "uncertainty_floor": ["--uncertainty-weight-floor", "1.0"],
    "dwa": ["--loss-weighting", "dwa"],
    "gradnorm": ["--loss-weighting", "gradnorm"],
    "famo": ["--loss-weighting", "famo"],
    "pcgrad": ["--gradient-surgery", "pcgrad"],
    "gradnorm_pcgrad": ["--loss-weighting", "gradnorm", "--gradient-surgery", "pcgrad"],
    "gradnorm_a3": ["--loss-weighting", "gradnorm", "--gradnorm-alpha", "3"],
    # a fixed larger share of the shared update for the head whose loss sits at chance (issue 12's diagnosis)
    "fixed_urgency3": ["--loss-weighting", "fixed", "--task-weight", "urgency=3"],
    "top1": ["--task-specific-layers", "1"],
    "top2": ["--task-specific-layers", "2"],
}


def _train(config_path: str, output: Path, flags: list[str], reuse: bool) -> dict:
    if reuse and (output / "metrics.json").is_file():
        return json.loads((output / "metrics.json").read_text())
    command = [sys.executable, "-m", "ticket_router", "-q", "train", "--config", config_path, "--lexical-weight", "0",
               "--output", str(output), *flags]
    started = time.time()
    subprocess.run(command, check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    metrics = json.loads((output / "metrics.json").read_text())
    metrics["bench_wall_s"] = round(time.time() - started, 1)
    metrics["load_average_after"] = os.getloadavg()
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def _predictions(model_dir: Path, texts: list[str], lexical: LexicalHeads | None, weight: float) -> dict:
    """Labels of the encoder heads alone and, with `lexical`, of the router fused with these shared n-gram heads
    (fitted once for every method, so that only the encoders differ), through Router.predict_proba."""
    router = Router.from_pretrained(model_dir)
    encoder = router.encoder_proba(texts, batch_size=64)
    result = {"encoder": {name: p.argmax(1) for name, p in encoder.items()}}
    if lexical is not None:
        router.set_lexical(lexical, weight)
        fused = router.predict_proba(texts, encoder_proba=encoder, calibrated=False)
        result["fused"] = {name: p.argmax(1) for name, p in fused.items()}
    return result


def _compare(gold: np.ndarray, a: np.ndarray, b: np.ndarray, resamples: int) -> dict:
    rows = gold >= 0
    lo, hi = paired_bootstrap_diff_ci(gold[rows], a[rows], b[rows], macro_f1, n_resamples=resamples)
    diff = macro_f1(gold[rows], a[rows]) - macro_f1(gold[rows], b[rows])
    verdict = "better" if lo > 0 else "worse" if hi < 0 else "same within noise"
    return {"diff": round(diff, 4), "ci95": [round(lo, 4), round(hi, 4)], "verdict": verdict}


def run(args: argparse.Namespace) -> dict:
    config = build_config(args.config, {})
    workdir = Path(args.workdir)
    test = read_table(args.test)
    specs = prepare_data(config).specs
    gold = encode_labels(test, specs, args.test)
    texts = join_text_columns(test, config.text_columns, args.test)
    lexical = None
    if args.fuse_weight > 0:
        data = prepare_data(config)
        lexical = LexicalHeads.fit(data.train_texts, data.train_labels, data.specs,
                                   LexicalSettings(weight=args.fuse_weight, class_weight_balanced=config.class_weights))
    names = [s.name for s in specs]
    results: dict = {"config": args.config, "test": args.test, "methods": {}, "single": {},
                     "machine": {"cpus": os.cpu_count(), "load_average_start": os.getloadavg()}}
    predictions = {}
    for method in args.methods.split(","):
        metrics = _train(args.config, workdir / method, METHODS[method] + args.extra, args.reuse)
        predictions[method] = _predictions(workdir / method, texts, lexical, args.fuse_weight)
        steps = metrics.get("global_steps") or 1
        results["methods"][method] = {
            "flags": METHODS[method],
            "seconds_per_step": round(metrics["train_runtime_s"] / steps, 3),
            "gradient_conflict": metrics.get("gradient_conflict"),
            "final_task_weights": metrics.get("task_weights"),
            "load_average_after": metrics.get("load_average_after"),
        }
        for kind, per_task in predictions[method].items():
            results["methods"][method][kind] = {
                name: round(macro_f1(gold[gold[:, t] >= 0, t], per_task[name][gold[:, t] >= 0]), 4)
                for t, name in enumerate(names)}
    for task in [t for t in args.single.split(",") if t]:
        column = dict(config.tasks)[task]
        output = workdir / "single" / task
        flags = ["--task", f"{task}={column}", "--drop-partial-rows", "--loss-weighting", "equal"]
        metrics = _train(args.config, output, flags + args.extra, args.reuse)
        predictions[f"single/{task}"] = _predictions(output, texts, lexical, args.fuse_weight)
        t = names.index(task)
        rows = gold[:, t] >= 0
        results["single"][task] = {
            kind: round(macro_f1(gold[rows, t], p[task][rows]), 4) for kind, p in predictions[f"single/{task}"].items()}
        results["single"][task]["seconds_per_step"] = round(metrics["train_runtime_s"] / (metrics["global_steps"] or 1), 3)
    reference = args.methods.split(",")[0]
    for method in results["methods"]:
        entry = results["methods"][method]
        base = results["methods"][reference]["seconds_per_step"]
        entry["step_time_vs_" + reference] = round(entry["seconds_per_step"] / base, 3) if base else None
        for kind in predictions[method]:
            entry[f"{kind}_vs_{reference}"] = {
                name: _compare(gold[:, t], predictions[method][kind][name], predictions[reference][kind][name],
                               args.resamples) for t, name in enumerate(names)} if method != reference else None
            entry[f"{kind}_vs_single"] = {
                task: _compare(gold[:, names.index(task)], predictions[method][kind][task],
                               predictions[f"single/{task}"][kind][task], args.resamples)
                for task in results["single"]}
    return results


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
    for method in args.step_time.split(","):
        output = Path(args.workdir) / "step-time" / method
        flags = [*METHODS[method], "--max-steps", str(args.step_time_steps), "--validation", "",
                 "--gradient-conflict-steps", "0"]
        metrics = _train(args.config, output, flags, reuse=False)
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
    earlier = json.loads(Path(args.json).read_text()) if Path(args.json).is_file() else {}
    if args.methods:  # a method run keeps the earlier timings, unless this call measures them again
        results = run(args) | {key: value for key, value in earlier.items() if key in _TIMING_KEYS}
    else:  # a timing-only call adds to the earlier results
        results = earlier or {"methods": {}, "single": {}}
    if args.step_time:
        results["step_time"] = step_time(args)
    if args.routing_cost:
        config = build_config(args.config, {})
        test = read_table(args.test)
        texts = join_text_columns(test, config.text_columns, args.test)[:256]
        results["routing_cost"] = routing_cost(config, texts, [int(k) for k in args.routing_cost.split(",")])
        results["routing_cost_load_average"] = os.getloadavg()
    Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    summary = {m: r.get("encoder") for m, r in results["methods"].items()} | {"single": results["single"]}
    print(json.dumps(summary | {key: results.get(key) for key in ("routing_cost", "step_time")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
