"""Issue 12's multi-task balancing protocol, shared by `python -m bench.mtl` and the bench's `mtl` section.

Each method is the config with `lexical_weight 0` plus its `ticket-router train` flags (`METHODS`), trained into
WORKDIR/<method>; single-task encoders are the same config with one task, its labeled rows only, equal weights (as
`ticket-router baselines`), in WORKDIR/single/<task>. Every model is scored on a held-out file with its encoder
heads alone and fused with n-gram heads fitted once on the training file (so only the encoders differ), through
`Router` exactly as it routes. Verdicts are paired-bootstrap 95% CIs of macro-F1 differences against the first
method (the reference) and against each head's single-task encoder. Step time is training seconds per optimizer
step (evaluation included, conflict logging as configured); it only compares runs on an equally loaded machine, so
each run records the load average after it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from ticket_router.config import TrainConfig, build_config, normalise
from ticket_router.data import encode_labels, join_text_columns, read_table
from ticket_router.errors import InputError
from ticket_router.lexical import LexicalHeads, LexicalSettings
from ticket_router.router import Router
from ticket_router.stats import macro_f1, paired_bootstrap_diff_ci
from ticket_router.training import PreparedData, prepare_data, train_router, trained_with

logger = logging.getLogger(__name__)

# name -> extra `ticket-router train` flags (on top of the config and --lexical-weight 0)
METHODS: dict[str, list[str]] = {
    "uncertainty": [],
    "equal": ["--loss-weighting", "equal"],
    # The floor caps how far learned uncertainty weighting may turn a task down (weights must stay < 1).
    "uncertainty_floor": ["--uncertainty-weight-floor", "0.5"],
    # On Harbor the starved urgency head ends at weight 0.81: only a floor above that binds there.
    "uncertainty_floor09": ["--uncertainty-weight-floor", "0.9"],
    # Equal weights for the first 500 steps, as in the reference deployment; Harbor's budget is 282 steps, so
    # there it is equal weighting throughout (on the support tickets, ~10% of 5 epochs).
    "warmup500": ["--uncertainty-warmup-steps", "500"],
    # Adam shares one normalised encoder step among three near-orthogonal task gradients (each gets ~1/sqrt(3) of a
    # single-task step); a larger encoder rate gives the slowest head its steps back
    "lr2e4": ["--learning-rate", "2e-4"],
    "lr3e4": ["--learning-rate", "3e-4"],
    "dwa": ["--loss-weighting", "dwa"],
    "gradnorm": ["--loss-weighting", "gradnorm"],
    "gradnorm_lr2e4": ["--loss-weighting", "gradnorm", "--learning-rate", "2e-4"],
    "famo": ["--loss-weighting", "famo"],
    "pcgrad": ["--gradient-surgery", "pcgrad"],
    "gradnorm_pcgrad": ["--loss-weighting", "gradnorm", "--gradient-surgery", "pcgrad"],
    "gradnorm_a3": ["--loss-weighting", "gradnorm", "--gradnorm-alpha", "3"],
    # a fixed larger share of the shared update for the head whose loss sits at chance (issue 12's diagnosis)
    "fixed_urgency3": ["--loss-weighting", "fixed", "--task-weight", "urgency=3"],
    "fixed_urgency3_lr2e4": ["--loss-weighting", "fixed", "--task-weight", "urgency=3", "--learning-rate", "2e-4"],
    "top1": ["--task-specific-layers", "1"],
    "top2": ["--task-specific-layers", "2"],
}
KINDS = ("encoder", "fused")  # encoder heads alone; fused with the shared n-gram heads


class Reuse(str, Enum):
    """Which finished trainings in the work folder are kept instead of trained again."""

    NONE = "none"
    FINISHED = "finished"  # any with a metrics.json (`bench.mtl --reuse`: runs trained by hand count too)
    SAME_CONFIG = "same-config"  # only one trained with this very config (`python -m bench --reuse`)


@dataclass(frozen=True)
class MtlProtocol:
    """One measurement: the methods (the first is the reference) and single-task encoders on one data set."""

    base: TrainConfig  # data, budget, backbone; every run trains it with lexical_weight 0 plus its flags
    config_path: str  # the YAML file `base` came from, as results name it
    test: str  # labeled file no training sees
    workdir: Path
    methods: tuple[str, ...]
    single: tuple[str, ...] = ()  # tasks whose single-task encoder to train
    fuse_weight: float = 0.5  # n-gram share in the fused scores (0: encoder heads alone only)
    resamples: int = 1000
    reuse: Reuse = Reuse.NONE
    extra: tuple[str, ...] = ()  # more train flags for every run

    def check(self) -> None:
        check_methods(self.methods, "methods")
        tasks = [t for t in self.single if t not in self.base.tasks]
        if tasks:
            raise InputError(f"single-task encoders for {tasks}: the config's tasks are {sorted(self.base.tasks)}")

    @property
    def reference(self) -> str:
        return self.methods[0]


def check_methods(methods: Sequence[str], source: str) -> None:
    """Refuse an empty list or names not in METHODS, naming the flag (`source`) they came from."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InputError(f"{source} {','.join(methods)!r}: unknown {unknown}; known: {', '.join(METHODS)}")


def flag_changes(flags: Sequence[str]) -> dict[str, Any]:
    """TrainConfig changes of `ticket-router train` flags (parsed by its own parser, so METHODS stay CLI flags)."""
    from ticket_router.cli import build_parser

    try:
        args = build_parser().parse_args(["train", *flags])
    except SystemExit:  # argparse has printed what it refused
        raise InputError(f"train flags {' '.join(flags)!r}: not all are `ticket-router train` flags") from None
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    return {name: normalise(name, value) for name, value in given.items()}


def run_config(base: TrainConfig, output: Path, flags: Sequence[str]) -> TrainConfig:
    """The config one method trains: the base, its flags, encoder heads alone, its own output folder."""
    config = replace(base, **{**flag_changes(flags), "lexical_weight": 0.0, "output": str(output),
                              "keep_checkpoints": False, "resume": False})
    config.validate()
    return config


def train(config: TrainConfig, reuse: Reuse) -> dict[str, Any]:
    """metrics.json of a finished training (kept or trained now), with its wall time and the load after it."""
    output = Path(config.output)
    finished = (output / "metrics.json").is_file()
    if (reuse is Reuse.FINISHED and finished) or (reuse is Reuse.SAME_CONFIG and trained_with(config)):
        logger.info("%s: finished training kept (reuse: %s)", output, reuse.value)
        return {**json.loads((output / "metrics.json").read_text()), "reused": True}
    started = time.time()
    train_router(config)
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


@dataclass
class TestSet:
    """The held-out file: its texts, gold labels (-1: unlabeled) and the task names in column order."""

    texts: list[str]
    gold: np.ndarray
    names: list[str]

    def f1(self, task: str, predicted: np.ndarray) -> float:
        t = self.names.index(task)
        rows = self.gold[:, t] >= 0
        return round(macro_f1(self.gold[rows, t], predicted[rows]), 4)


def _shared_lexical(protocol: MtlProtocol, data: PreparedData) -> LexicalHeads | None:
    if protocol.fuse_weight <= 0:
        return None
    settings = LexicalSettings(weight=protocol.fuse_weight, class_weight_balanced=protocol.base.class_weights)
    return LexicalHeads.fit(data.train_texts, data.train_labels, data.specs, settings)


def _seconds_per_step(metrics: dict[str, Any]) -> float:
    return round(metrics["train_runtime_s"] / (metrics.get("global_steps") or 1), 3)


def _method_entry(method: str, metrics: dict[str, Any], predicted: dict, test: TestSet) -> dict[str, Any]:
    entry = {"flags": METHODS[method], "seconds_per_step": _seconds_per_step(metrics),
             "gradient_conflict": metrics.get("gradient_conflict"), "final_task_weights": metrics.get("task_weights"),
             "load_average_after": metrics.get("load_average_after"), "reused": bool(metrics.get("reused"))}
    for kind, per_task in predicted.items():
        entry[kind] = {name: test.f1(name, per_task[name]) for name in test.names}
    return entry


def _single_entry(task: str, metrics: dict[str, Any], predicted: dict, test: TestSet) -> dict[str, Any]:
    entry: dict[str, Any] = {kind: test.f1(task, per_task[task]) for kind, per_task in predicted.items()}
    entry["seconds_per_step"] = _seconds_per_step(metrics)
    entry["gradient_conflict"] = metrics.get("gradient_conflict")
    entry["reused"] = bool(metrics.get("reused"))
    return entry


def _add_verdicts(protocol: MtlProtocol, results: dict, predictions: dict, test: TestSet) -> None:
    """Step time and paired verdicts of every method against the reference and the single-task encoders."""
    reference = protocol.reference
    base = results["methods"][reference]["seconds_per_step"]
    for method, entry in results["methods"].items():
        entry["step_time_vs_" + reference] = round(entry["seconds_per_step"] / base, 3) if base else None
        for kind, mine in predictions[method].items():
            theirs = predictions[reference][kind]
            entry[f"{kind}_vs_{reference}"] = {
                name: _compare(test.gold[:, t], mine[name], theirs[name], protocol.resamples)
                for t, name in enumerate(test.names)} if method != reference else None
            entry[f"{kind}_vs_single"] = {
                task: _compare(test.gold[:, test.names.index(task)], mine[task],
                               predictions[f"single/{task}"][kind][task], protocol.resamples)
                for task in results["single"]}


def run_protocol(protocol: MtlProtocol) -> dict[str, Any]:
    """Train (or keep) every method and single-task encoder, score them on the test file, compare them."""
    protocol.check()
    data = prepare_data(protocol.base)
    frame = read_table(protocol.test)
    test = TestSet(join_text_columns(frame, protocol.base.text_columns, protocol.test),
                   encode_labels(frame, data.specs, protocol.test), [s.name for s in data.specs])
    lexical = _shared_lexical(protocol, data)
    results: dict[str, Any] = {
        "config": protocol.config_path, "train": protocol.base.train,
        "validation": protocol.base.validation, "test": protocol.test, "reference": protocol.reference,
        "fuse_weight": protocol.fuse_weight, "resamples": protocol.resamples, "methods": {}, "single": {},
        "machine": {"cpus": os.cpu_count(), "load_average_start": os.getloadavg()}}
    predictions = {}
    for method in protocol.methods:
        config = run_config(protocol.base, protocol.workdir / method, [*METHODS[method], *protocol.extra])
        metrics = train(config, protocol.reuse)
        predictions[method] = _predictions(protocol.workdir / method, test.texts, lexical, protocol.fuse_weight)
        results["methods"][method] = _method_entry(method, metrics, predictions[method], test)
    for task in protocol.single:
        output = protocol.workdir / "single" / task
        flags = ["--task", f"{task}={protocol.base.tasks[task]}", "--drop-partial-rows", "--loss-weighting", "equal"]
        metrics = train(run_config(protocol.base, output, [*flags, *protocol.extra]), protocol.reuse)
        predictions[f"single/{task}"] = _predictions(output, test.texts, lexical, protocol.fuse_weight)
        results["single"][task] = _single_entry(task, metrics, predictions[f"single/{task}"], test)
    _add_verdicts(protocol, results, predictions, test)
    return results


def base_config(args: argparse.Namespace) -> TrainConfig:
    """`python -m bench.mtl`'s config with its --train/--validation files."""
    # every run has its own output folder under WORKDIR: the config's output is never written
    return build_config(args.config, {"train": args.train, "validation": args.validation, "output": args.workdir})


def protocol_from_args(args: argparse.Namespace) -> MtlProtocol:
    """`python -m bench.mtl`'s flags as a protocol (`--reuse` keeps any finished run, as it always did)."""
    base = base_config(args)
    check_methods(args.methods.split(","), "--methods")
    return MtlProtocol(base=base, config_path=args.config, test=args.test, workdir=Path(args.workdir), methods=tuple(args.methods.split(",")),
                       single=tuple(t for t in args.single.split(",") if t), fuse_weight=args.fuse_weight,
                       resamples=args.resamples, reuse=Reuse.FINISHED if args.reuse else Reuse.NONE,
                       extra=tuple(args.extra))
