#!/usr/bin/env python
"""Benchmarks on real tickets: `make bench` (full; ~2 h on 2 CPU cores) or `make bench-quick` (~10 min).

Sections, run in this order (`--only NAME[,NAME]` runs some and merges them into an existing results.json):

  reference  majority class and TF-IDF + logistic regression, one model per task
  router     the recommended config over seeds (`train_router`; `--reuse` keeps finished ones)
  single     single-task fine-tunes, same backbone, budget and seeds (`train_baselines`)
  shadow     paired router-vs-single-task statistics per seed (`run_shadow`)
  ablations  one-key variations of the recommended config, first seed, ablation budget
  speed      training and inference throughput and peak memory on this machine
  gpu        mixed-precision throughput, only where CUDA is available

Results go to `bench/results.json`; the tables go into `BENCHMARKS.md` between `<!-- bench:begin -->` and
`<!-- bench:end -->`. The tables are rendered from results.json alone, so every number in them was measured by a
recorded run, whose command and machine each table names.

Time budget on 2 CPU cores (MiniLM-L6 with length grouping trains ~2,837 tickets in ~3.2 min per epoch at length
128, plus ~15 s per evaluation): a router with the recommended 5 epochs takes ~16.5 min. The full run trains 3
routers (~50 min), the single-task models of the first seed only (3 x ~16.5 min; `--single-seeds 3` trains all
seeds, ~100 min more), 6 ablation models at 0.5 epoch (~12 min; identical trainings are reused), plus shadow (~3
min), speed (~7 min) and reference (<1 min): ~2 h, over the issue's ~90-minute goal; BENCHMARKS.md says so.
`--epochs`, `--seeds` and `--single-seeds` trade fidelity for time; `--quick` runs in ~10 min.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/run.py` puts bench/ first on the path, not the repo root
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from datasets import concatenate_datasets  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from ticket_router import stats  # noqa: E402
from ticket_router.backbone import load_backbone, resolve_backbone  # noqa: E402
from ticket_router.baselines import train_baselines  # noqa: E402
from ticket_router.config import TrainConfig, build_config, load_yaml_config  # noqa: E402
from ticket_router.data import join_text_columns, read_table, tokenize_dataset  # noqa: E402
from ticket_router.errors import InputError  # noqa: E402
from ticket_router.modeling import MultiTaskRouterModel  # noqa: E402
from ticket_router.router import Router  # noqa: E402
from ticket_router.serialization import json_safe  # noqa: E402
from ticket_router.shadow import VERDICT_BETTER, VERDICT_SAME, VERDICT_WORSE, run_shadow, verdict  # noqa: E402
from ticket_router.tasks import canonical_label  # noqa: E402
from ticket_router.trainer import MultiTaskTrainer  # noqa: E402
from ticket_router.training import prepare_data, train_or_reuse  # noqa: E402
from ticket_router.training_args import Precision, RouterTrainingArguments, resolve_precision  # noqa: E402

logger = logging.getLogger(__name__)

SECTIONS = ("reference", "router", "single", "shadow", "ablations", "speed", "gpu")
MARK_BEGIN, MARK_END = "<!-- bench:begin -->", "<!-- bench:end -->"
MD_HEADER = (
    "# Benchmarks\n\n"
    "Measured by `make bench` (`python bench/run.py`; `make bench-quick` for a short run). Everything between the\n"
    "markers below is rewritten from `bench/results.json` on every run; edit only outside them.\n\n"
)

# Defaults for the shared support-ticket set; a config that names its own tasks/text columns wins.
DEFAULT_TASKS = {"category": "type", "urgency": "priority", "queue": "queue"}
DEFAULT_TEXT_COLUMNS = ["subject", "body"]
FIRST_SEED = 42
# Budgets sized for 2 CPU cores (arithmetic in the module docstring). Three seeds of single-task models at the
# recommended 5 epochs would add ~100 min, so the full run trains them for the first seed, which the shadow
# statistics need; the router's own spread over 3 seeds gives the noise scale.
QUICK_EPOCHS = 0.1
FULL_ABLATION_EPOCHS = 0.5
FULL_SEEDS, QUICK_SEEDS = 3, 1
FULL_SINGLE_SEEDS = 1
FULL_SPEED_STEPS, QUICK_SPEED_STEPS = 60, 30
QUICK_SPEED_TEXTS = 256  # the quick run times inference on the first 256 validation tickets, the full run on all
FIRST_TIMED_STEP = 5  # steps before this one pay for allocator growth and lazy init; they are not timed
INFERENCE_BATCH, INFERENCE_REPEATS = 32, 3
GPU_LARGE_BATCH = 128  # the GPU section also times training at this batch
GPU_STEPS = 150
SHADOW_LATENCY_REPEATS = 3
SPEEDUP_GOAL_PER_HEAD = 2.8 / 3  # the issue's goal: >= 2.8x for three heads (limit 3.0x)
DEFAULT_MISSING = "queue=0.4,urgency=0.2"


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Budget:
    """A training budget: epochs, unless max_steps > 0 (which wins, as in the Trainer)."""

    epochs: float
    max_steps: int = -1

    def describe(self) -> str:
        return f"{self.max_steps} steps" if self.max_steps > 0 else f"{self.epochs:g} epoch(s)"


@dataclass(frozen=True)
class Bench:
    """Everything a section needs, resolved once from the command line and the recommended config."""

    base: TrainConfig
    config_path: Path
    data_dir: Path
    out: Path
    seeds: tuple[int, ...]
    single_seeds: tuple[int, ...]  # the first seeds: single-task models (and shadow statistics) for these only
    budget: Budget
    ablation_budget: Budget
    speed_steps: int
    speed_texts: int | None
    bootstrap: int
    missing_rates: dict[str, float]
    quick: bool
    reuse: bool  # keep models of --out trained with the identical config; refit their lexical heads only
    command: str
    machine: dict[str, Any] = field(repr=False)

    @property
    def tasks(self) -> dict[str, str]:
        return dict(self.base.tasks)

    def run_config(self, output: Path, seed: int, budget: Budget, **changes: Any) -> TrainConfig:
        """The recommended config for one training: its own output, seed and budget, plus `changes`."""
        config = replace(self.base, output=str(output), seed=seed, epochs=budget.epochs, max_steps=budget.max_steps,
                         keep_checkpoints=False, resume=False, **changes)
        config.validate()
        return config

    def model_dirs(self, seed: int) -> tuple[Path, Path]:
        return self.out / "router" / f"seed{seed}", self.out / "single" / f"seed{seed}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="One seed and a short budget (< ~15 min on 2 cores).")
    p.add_argument("--only", help=f"Comma-separated sections to run and merge into --results: {','.join(SECTIONS)}.")
    p.add_argument("--data-dir",
                   help="Folder with train.csv and validation.csv. Default: ../shared/data/support-tickets.")
    p.add_argument("--config", help="Recommended TrainConfig YAML. Default: configs/support-tickets.yaml.")
    p.add_argument("--out", help="Model and report folder (git-ignored). Default: bench/out.")
    p.add_argument("--results", help="Results JSON. Default: bench/results.json.")
    p.add_argument("--benchmarks-md", help="Markdown file for the tables. Default: BENCHMARKS.md.")
    p.add_argument("--backbone", help="Backbone for every model (default: the config's).")
    p.add_argument("--seeds", type=int,
                   help=f"Number of seeds from {FIRST_SEED}. Default: {FULL_SEEDS} ({QUICK_SEEDS} quick).")
    p.add_argument("--single-seeds", type=int,
                   help="Seeds (the first ones) for the single-task models and shadow statistics. "
                        f"Default: {FULL_SINGLE_SEEDS}.")
    p.add_argument("--epochs", type=float,
                   help=f"Epochs per main training. Default: the config's budget ({QUICK_EPOCHS:g} with --quick).")
    p.add_argument("--ablation-epochs", type=float,
                   help=f"Epochs per ablation training. Default: {FULL_ABLATION_EPOCHS:g}, at most the main budget.")
    p.add_argument("--max-steps", type=int, help="Optimizer steps for every training (overrides epochs; smoke tests).")
    p.add_argument("--speed-steps", type=int,
                   help=f"Steps per throughput run. Default: {FULL_SPEED_STEPS} ({QUICK_SPEED_STEPS} quick).")
    p.add_argument("--speed-texts", type=int, help="Validation tickets for inference timing. Default: all (256 quick).")
    p.add_argument("--reuse", action="store_true",
                   help="Keep the models in --out that were trained with the identical config (a stopped run, or "
                        "lexical settings changed): refit their lexical heads and score them again, no fine-tune. "
                        "Their train time is the original run's; the tables mark them.")
    p.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples in the shadow CI. Default: 1000.")
    p.add_argument("--missing", default=DEFAULT_MISSING,
                   help=f"TASK=RATE of labels blanked for the missing-labels ablation. Default: {DEFAULT_MISSING}.")
    return p.parse_args(argv)


def _path(value: str | None, default: str) -> Path:
    """A given path is relative to the working directory; a default one to the repository root."""
    return Path(value).expanduser() if value else REPO / default


def _selected_sections(only: str | None) -> list[str]:
    if not only:
        return list(SECTIONS)
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise InputError(f"--only {only!r}: unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    return [name for name in SECTIONS if name in names]  # dependency order, whatever order was typed


def _parse_rates(text: str) -> dict[str, float]:
    rates = {}
    for item in text.split(","):
        task, _, rate = item.partition("=")
        try:
            rates[task.strip()] = float(rate)
        except ValueError:
            raise InputError(f"--missing {text!r}: {item!r} is not TASK=RATE") from None
        if not 0 <= rates[task.strip()] < 1:
            raise InputError(f"--missing {text!r}: rate {rate!r} must be in [0, 1)")
    return rates


def load_base_config(config_path: Path, data_dir: Path, out: Path, backbone: str | None) -> TrainConfig:
    """The recommended config with this data set's files; tasks/text columns default to the support-ticket set."""
    raw = load_yaml_config(config_path)
    overrides: dict[str, Any] = {"train": str(data_dir / "train.csv"), "validation": str(data_dir / "validation.csv"),
                                 "output": str(out), "backbone": backbone}
    for name in ("train", "validation"):
        if not Path(overrides[name]).is_file():
            raise InputError(f"--data-dir {data_dir}: no {name}.csv there")
    if "tasks" not in raw:
        logger.info("%s names no tasks: using %s", config_path, DEFAULT_TASKS)
        overrides["tasks"] = dict(DEFAULT_TASKS)
    if "text_columns" not in raw:
        overrides["text_columns"] = list(DEFAULT_TEXT_COLUMNS)
    return build_config(str(config_path), overrides)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    import psutil

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def machine_line(machine: dict[str, Any]) -> str:
    return (f"{machine['cpu']}, {machine['cpu_usable']} usable CPU core(s) of {machine['cpu_count']}, "
            f"{machine['memory_gib']} GiB RAM, torch {machine['torch']} ({machine['torch_threads']} threads), "
            f"transformers {machine['transformers']}, GPU: {machine['gpu'] or 'none'}")


def make_bench(args: argparse.Namespace, command: str) -> Bench:
    quick = args.quick
    out = _path(args.out, "bench/out")
    config_path = _path(args.config, "configs/support-tickets.yaml")
    data_dir = _path(args.data_dir, "../shared/data/support-tickets")
    base = load_base_config(config_path, data_dir, out, args.backbone)
    # The full run trains with the recommended config's own budget: the figures must describe that config.
    max_steps = args.max_steps if args.max_steps is not None else (-1 if quick else base.max_steps)
    epochs = args.epochs if args.epochs is not None else (QUICK_EPOCHS if quick else base.epochs)
    ablation_epochs = args.ablation_epochs if args.ablation_epochs is not None else min(epochs, FULL_ABLATION_EPOCHS)
    n_seeds = args.seeds if args.seeds is not None else (QUICK_SEEDS if quick else FULL_SEEDS)
    speed_steps = args.speed_steps if args.speed_steps is not None else (
        QUICK_SPEED_STEPS if quick else FULL_SPEED_STEPS)
    n_single = args.single_seeds if args.single_seeds is not None else min(n_seeds, FULL_SINGLE_SEEDS)
    if not 1 <= n_single <= n_seeds:
        raise InputError(f"--single-seeds={n_single} must be between 1 and --seeds ({n_seeds})")
    if n_seeds < 1 or speed_steps <= FIRST_TIMED_STEP or args.bootstrap < 1:
        raise InputError(f"need --seeds >= 1, --speed-steps > {FIRST_TIMED_STEP} and --bootstrap >= 1")
    missing = _parse_rates(args.missing)
    unknown = sorted(set(missing) - set(base.tasks))
    if unknown:
        raise InputError(f"--missing names task(s) {unknown}; the config's tasks are {sorted(base.tasks)}")
    return Bench(
        base=base, config_path=config_path, data_dir=data_dir, out=out,
        seeds=tuple(FIRST_SEED + i for i in range(n_seeds)),
        single_seeds=tuple(FIRST_SEED + i for i in range(n_single)),
        budget=Budget(epochs, max_steps), ablation_budget=Budget(ablation_epochs, max_steps),
        speed_steps=speed_steps,
        speed_texts=args.speed_texts if args.speed_texts is not None else (QUICK_SPEED_TEXTS if quick else None),
        bootstrap=args.bootstrap, missing_rates=missing, quick=quick, reuse=args.reuse, command=command, machine=machine_info(),
    )


def settings(bench: Bench) -> dict[str, Any]:
    raw = load_yaml_config(bench.config_path)
    return {
        "quick": bench.quick, "config": str(bench.config_path), "data_dir": str(bench.data_dir),
        "out": str(bench.out), "backbone": bench.base.backbone or "default (packaged all-MiniLM-L6-v2)",
        "tasks": bench.tasks, "text_columns": bench.base.text_columns, "seeds": list(bench.seeds),
        "single_seeds": list(bench.single_seeds),
        "budget": asdict(bench.budget), "ablation_budget": asdict(bench.ablation_budget),
        "config_budget": {"epochs": raw.get("epochs", TrainConfig.epochs), "max_steps": raw.get("max_steps", -1)},
        "batch_size": bench.base.batch_size, "max_length": bench.base.max_length,
        "speed_steps": bench.speed_steps, "speed_texts": bench.speed_texts, "bootstrap": bench.bootstrap,
        "missing_rates": bench.missing_rates,
    }


# --------------------------------------------------------------------------- shared helpers


def _spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and sample std over seeds (std None for one seed); None values (no gold labels) are left out."""
    kept = [float(v) for v in values if v is not None]
    return {
        "mean": statistics.fmean(kept) if kept else None,
        "std": statistics.stdev(kept) if len(kept) > 1 else None,
        "values": list(values),
    }


def _scores(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    """Accuracy and macro-F1 over gold ∪ predicted labels, as the router's own metrics count them."""
    y_true, y_pred = np.asarray(y_true, dtype=object).astype(str), np.asarray(y_pred, dtype=object).astype(str)
    return {"accuracy": float(np.mean(y_true == y_pred)), "macro_f1": stats.macro_f1(y_true, y_pred), "n": len(y_true)}


def _task_scores(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: metrics.get(key) for key in ("macro_f1", "accuracy", "n")}


def _mean_f1(tasks: dict[str, dict]) -> float | None:
    scores = [t["macro_f1"] for t in tasks.values() if t.get("macro_f1") is not None]
    return statistics.fmean(scores) if scores else None


def training_key(config: TrainConfig) -> str:
    """What determines a training's result: the config minus where it is saved, with inert keys normalised.

    Two configs with the same key train the same model (same seed, data, budget, objective), so the bench reuses
    the first result instead of spending ~4 CPU-minutes on a copy.
    """
    values = asdict(config)
    for inert in ("output", "keep_checkpoints", "resume", "logging_steps"):
        values.pop(inert)
    if values["max_steps"] > 0:
        values["epochs"] = None  # max_steps wins over epochs in the Trainer
    weights = [float(values["task_weights"].get(task, 1.0)) for task in values["tasks"]]
    if values["loss_weighting"] == "fixed" and all(w == 1.0 for w in weights):
        values["loss_weighting"] = "equal"  # sum_t 1.0 * L_t is exactly the equal objective (losses.py)
    if values["loss_weighting"] != "fixed":
        values["task_weights"] = {}  # only read by fixed weighting
    if values["loss_weighting"] != "uncertainty":
        values["uncertainty_warmup_steps"] = 0
    return json.dumps(values, sort_keys=True, default=str)


# With lexical heads fused, metrics.json scores each part alone too (training.evaluation_metrics).
PARTS = ("encoder_only", "lexical_only")


def _part_scores(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """{part: {"tasks", "mean_macro_f1"}} over the tasks of one or more metrics.json summaries (one per model)."""
    parts = {}
    for part in PARTS:
        tasks = {name: _task_scores(m) for s in summaries for name, m in s.get(part, {}).get("tasks", {}).items()}
        if tasks:
            parts[part] = {"tasks": tasks, "mean_macro_f1": _mean_f1(tasks)}
    return parts


def run_record(config: TrainConfig, summary: dict[str, Any], wall_s: float) -> dict[str, Any]:
    tasks = {name: _task_scores(metrics) for name, metrics in summary["tasks"].items()}
    return {
        "seed": config.seed, "output": config.output, "key": training_key(config), "tasks": tasks,
        "mean_macro_f1": _mean_f1(tasks), "train_runtime_s": summary.get("train_runtime_s"),
        "train_samples_per_second": summary.get("train_samples_per_second"),
        "global_steps": summary.get("global_steps"), "wall_s": round(wall_s, 2), **_part_scores([summary]),
        "reused": bool(summary.get("reused")),
    }


def train_run(config: TrainConfig, label: str, reuse: bool = False) -> dict[str, Any]:
    logger.info("training %s: seed %d, epochs %g, max_steps %d -> %s",
                label, config.seed, config.epochs, config.max_steps, config.output)
    started = time.perf_counter()
    summary = train_or_reuse(config, reuse)
    record = run_record(config, summary, time.perf_counter() - started)
    logger.info("%s: mean macro-F1 %.4f in %.0f s", label, record["mean_macro_f1"] or float("nan"), record["wall_s"])
    return record


def _score_spread(scored: list[dict[str, Any]]) -> dict[str, Any]:
    tasks = list(scored[0]["tasks"])
    return {
        "tasks": {t: {m: _spread([r["tasks"][t][m] for r in scored]) for m in ("macro_f1", "accuracy")} for t in tasks},
        "mean_macro_f1": _spread([r["mean_macro_f1"] for r in scored]),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task mean ± std of macro-F1 and accuracy over seeds (of each fused part too), and of the training cost."""
    summary = {
        "n_seeds": len(runs), **_score_spread(runs),
        "train_runtime_s": _spread([r["train_runtime_s"] for r in runs]),
        "train_samples_per_second": _spread([r.get("train_samples_per_second") for r in runs]),
        "wall_s": _spread([r["wall_s"] for r in runs]),
        "n_reused": sum(bool(r.get("reused")) for r in runs),
    }
    for part in PARTS:
        if all(part in r for r in runs):
            summary[part] = _score_spread([r[part] for r in runs])
    return summary


def _require_model(path: Path, section: str) -> Path:
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: no trained model; run the {section} section first (--only {section})")
    return path


def validation_texts(bench: Bench) -> list[str]:
    return join_text_columns(read_table(bench.base.validation), bench.base.text_columns, bench.base.validation)


# --------------------------------------------------------------------------- 1. reference rows


def _train_and_validation(bench: Bench) -> tuple[Any, Any, list[str], list[str]]:
    """Both tables of the bench's data and their joined ticket texts."""
    cfg = bench.base
    train, val = read_table(cfg.train), read_table(cfg.validation)
    return (train, val, join_text_columns(train, cfg.text_columns, cfg.train),
            join_text_columns(val, cfg.text_columns, cfg.validation))


def _labeled(texts: list[str], column: list[Any]) -> tuple[list[str], list[str]]:
    """The texts and canonical labels of the rows labeled for one task (blank cells mean "not labeled")."""
    pairs = [(text, canonical_label(value)) for text, value in zip(texts, column)]
    kept = [(text, label) for text, label in pairs if label is not None]
    return [t for t, _ in kept], [label for _, label in kept]


def _majority(train_y: list[str], val_y: list[str]) -> dict[str, Any]:
    label = Counter(train_y).most_common(1)[0][0]
    return {"label": label, **_scores(val_y, [label] * len(val_y))}


def _tfidf_model():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                         LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000))


def _tfidf(train_x: list[str], train_y: list[str], val_x: list[str], val_y: list[str]) -> dict[str, Any]:
    """The issue's classical reference, built with scikit-learn alone (not through ticket_router).

    Settings: word 1-2 grams in at least 2 tickets, sublinear tf, balanced logistic regression with C=10. They
    reproduce the issue's row (0.791 / 0.449 / 0.328 on type / priority / queue) to the third digit; the defaults
    (min_df=1, C=1) score lower (0.770 / 0.431 / 0.298) and would make the bar easier than the issue's.
    """
    model = _tfidf_model()
    started = time.perf_counter()
    model.fit(train_x, train_y)
    fit_s = time.perf_counter() - started
    return {**_scores(val_y, model.predict(val_x)), "fit_s": round(fit_s, 3), "n_train": len(train_y)}


def section_reference(bench: Bench, results: dict[str, Any]) -> dict[str, Any]:
    """Majority class and TF-IDF (1-2 grams, min_df 2, sublinear tf) + balanced logistic regression (C=10), per task."""
    cfg = bench.base
    train, val, train_texts, val_texts = _train_and_validation(bench)
    tasks = {}
    for task, column in bench.tasks.items():
        train_x, train_y = _labeled(train_texts, train[column])
        val_x, val_y = _labeled(val_texts, val[column])
        if not val_y:
            raise InputError(f"{cfg.validation}: no row labeled for task {task!r} (column {column!r})")
        tasks[task] = {"column": column, "majority": _majority(train_y, val_y),
                       "tfidf": _tfidf(train_x, train_y, val_x, val_y)}
        logger.info("reference %s: majority F1 %.3f, TF-IDF F1 %.3f", task,
                    tasks[task]["majority"]["macro_f1"], tasks[task]["tfidf"]["macro_f1"])
    return {
        "n_train": len(train), "n_validation": len(val), "tasks": tasks,
        "majority_mean_macro_f1": _mean_f1({t: v["majority"] for t, v in tasks.items()}),
        "tfidf_mean_macro_f1": _mean_f1({t: v["tfidf"] for t, v in tasks.items()}),
        "tfidf_fit_s": round(sum(v["tfidf"]["fit_s"] for v in tasks.values()), 3),
    }


# --------------------------------------------------------------------------- 2. router over seeds


def section_router(bench: Bench, results: dict[str, Any]) -> dict[str, Any]:
    runs = []
    for i, seed in enumerate(bench.seeds, 1):
        config = bench.run_config(bench.model_dirs(seed)[0], seed, bench.budget)
        runs.append(train_run(config, f"router {i}/{len(bench.seeds)}", bench.reuse))
    return {"budget": asdict(bench.budget), "runs": runs, "summary": summarise(runs)}


# --------------------------------------------------------------------------- 3. single-task fine-tunes


def _single_record(config: TrainConfig, summaries: dict[str, dict], wall_s: float) -> dict[str, Any]:
    tasks = {task: _task_scores(summary["tasks"][task]) for task, summary in summaries.items()}
    per_task_s = {task: summary.get("train_runtime_s") for task, summary in summaries.items()}
    return {
        "seed": config.seed, "output": config.output, "tasks": tasks, "mean_macro_f1": _mean_f1(tasks),
        "train_runtime_s": round(sum(s for s in per_task_s.values() if s is not None), 2),
        "per_task_runtime_s": per_task_s, "wall_s": round(wall_s, 2), **_part_scores(list(summaries.values())),
        "reused": any(summary.get("reused") for summary in summaries.values()),
    }


def section_single(bench: Bench, results: dict[str, Any]) -> dict[str, Any]:
    """One model per task on the rows labeled for it: same backbone, budget, seeds (`train_baselines`)."""
    runs = []
    for i, seed in enumerate(bench.single_seeds, 1):
        config = bench.run_config(bench.model_dirs(seed)[1], seed, bench.budget)
        logger.info("single-task models %d/%d: seed %d -> %s", i, len(bench.single_seeds), seed, config.output)
        started = time.perf_counter()
        runs.append(_single_record(config, train_baselines(config, bench.reuse), time.perf_counter() - started))
    return {"budget": asdict(bench.budget), "runs": runs, "summary": summarise(runs)}


# --------------------------------------------------------------------------- 4. shadow statistics


def _shadow_task(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "multitask_macro_f1": entry["multitask"]["macro_f1"], "single_task_macro_f1": entry["single_task"]["macro_f1"],
        "macro_f1_diff": entry["macro_f1_diff"], "ci95": entry["macro_f1_diff_ci95"],
        "mcnemar_p": entry["mcnemar_p"], "verdict": entry["verdict"],
    }


def _shadow_summary(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {}
    for task in per_seed[0]["tasks"]:
        verdicts = [seed["tasks"][task]["verdict"] for seed in per_seed]
        summary[task] = {
            "mean_diff": _spread([seed["tasks"][task]["macro_f1_diff"] for seed in per_seed])["mean"],
            "verdicts": verdicts, "n_seeds": len(verdicts),
            "n_worse": verdicts.count(VERDICT_WORSE), "n_better": verdicts.count(VERDICT_BETTER),
            "n_same": verdicts.count(VERDICT_SAME),
        }
    return summary


def section_shadow(bench: Bench, results: dict[str, Any]) -> dict[str, Any]:
    per_seed = []
    for seed in bench.single_seeds:
        router_dir, single_dir = bench.model_dirs(seed)
        _require_model(router_dir, "router")
        _require_model(single_dir / next(iter(bench.tasks)), "single")
        report_dir = bench.out / "shadow" / f"seed{seed}"
        logger.info("shadow comparison, seed %d -> %s", seed, report_dir)
        report = run_shadow(router_dir, single_dir, bench.base.validation, report_dir,
                            n_bootstrap=bench.bootstrap, latency_repeats=SHADOW_LATENCY_REPEATS)
        per_seed.append({
            "seed": seed, "report": str(report_dir / "report.md"), "speedup": report["latency"]["speedup"],
            "tasks": {task: _shadow_task(entry) for task, entry in report["tasks"].items()},
        })
    return {"n_bootstrap": bench.bootstrap, "latency_repeats": SHADOW_LATENCY_REPEATS,
            "per_seed": per_seed, "summary": _shadow_summary(per_seed), "versus_tfidf": versus_tfidf(bench)}


def _tfidf_validation_predictions(bench: Bench) -> tuple[list[str], dict[str, tuple[list[int], list[str], list[str]]]]:
    """The validation texts and, per task, its labeled rows, their gold labels and the TF-IDF reference's labels."""
    train, val, train_texts, val_texts = _train_and_validation(bench)
    per_task = {}
    for task, column in bench.tasks.items():
        train_x, train_y = _labeled(train_texts, train[column])
        gold = [canonical_label(value) for value in val[column]]
        rows = [i for i, label in enumerate(gold) if label is not None]
        predicted = _tfidf_model().fit(train_x, train_y).predict([val_texts[i] for i in rows])
        per_task[task] = (rows, [gold[i] for i in rows], [str(label) for label in predicted])
    return val_texts, per_task


def versus_tfidf(bench: Bench) -> dict[str, Any]:
    """Router − TF-IDF macro-F1 per task and router seed, with the paired bootstrap CI on the same validation rows.

    The bar's "beats TF-IDF" compares means over seeds; this says whether a margin is larger than the noise of a
    608-ticket validation set, the evidence the issue asks for where a head falls short.
    """
    texts, reference = _tfidf_validation_predictions(bench)
    per_seed = []
    for seed in bench.seeds:
        router = Router.from_pretrained(_require_model(bench.model_dirs(seed)[0], "router"))
        proba = router.predict_proba(texts)
        tasks = {}
        for spec in router.specs:
            rows, gold, tfidf = reference[spec.name]
            routed = [spec.labels[k] for k in proba[spec.name][rows].argmax(axis=1)]
            ci = stats.paired_bootstrap_diff_ci(gold, routed, tfidf, stats.macro_f1, n_resamples=bench.bootstrap)
            diff = stats.macro_f1(gold, routed) - stats.macro_f1(gold, tfidf)
            tasks[spec.name] = {"macro_f1_diff": diff, "ci95": list(ci), "verdict": verdict(ci)}
        per_seed.append({"seed": seed, "tasks": tasks})
        del router
        gc.collect()
    summary = {task: {"verdicts": [s["tasks"][task]["verdict"] for s in per_seed],
                      "mean_diff": _spread([s["tasks"][task]["macro_f1_diff"] for s in per_seed])["mean"]}
               for task in reference}
    return {"per_seed": per_seed, "summary": summary}


# --------------------------------------------------------------------------- 5. ablations


@dataclass(frozen=True)
class Variant:
    group: str
    name: str
    changes: dict[str, Any]

    @property
    def slug(self) -> str:
        text = f"{self.group}-{self.name}".lower()
        return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def ablation_variants(base: TrainConfig, missing_train: str) -> list[Variant]:
    """The recommended config, then one key changed at a time (missing labels: the training file changed)."""
    ones = {task: 1.0 for task in base.tasks}
    return [
        Variant("recommended", "recommended config", {}),
        Variant("loss weighting", "equal", {"loss_weighting": "equal"}),
        Variant("loss weighting", "fixed (weights 1.0)", {"loss_weighting": "fixed", "task_weights": ones}),
        Variant("loss weighting", "uncertainty", {"loss_weighting": "uncertainty"}),
        Variant("batch sampling", "proportional", {"sampling": "proportional"}),
        Variant("batch sampling", "random", {"sampling": "random"}),
        Variant("class weights", "on", {"class_weights": True}),
        Variant("class weights", "off", {"class_weights": False}),
        Variant("pooling", "cls", {"pooling": "cls"}),
        Variant("pooling", "mean", {"pooling": "mean"}),
        Variant("pooling", "attention", {"pooling": "attention"}),
        Variant("missing labels", "masked loss, all rows", {"train": missing_train}),
        Variant("missing labels", "drop partial rows", {"train": missing_train, "drop_partial_rows": True}),
    ]


def write_missing_labels(train_path: str, tasks: dict[str, str], rates: dict[str, float], seed: int,
                         path: Path) -> dict[str, Any]:
    """A copy of the training file with a seeded random share of each task's labels blanked."""
    frame = read_table(train_path).to_pandas()
    rng = np.random.default_rng(seed)
    blanked = {}
    for task, rate in rates.items():
        column = tasks[task]
        labeled = np.flatnonzero(frame[column].map(canonical_label).notna().to_numpy())
        chosen = rng.choice(labeled, size=round(rate * len(labeled)), replace=False)
        frame.loc[chosen, column] = ""
        blanked[task] = {"column": column, "rate": rate, "labeled": len(labeled), "blanked": len(chosen)}
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    labeled_cells = [frame[column].map(canonical_label).notna() for column in tasks.values()]
    complete = int(np.logical_and.reduce([cells.to_numpy() for cells in labeled_cells]).sum())
    logger.info("missing-labels copy %s: %s; %d of %d rows keep every label", path, blanked, complete, len(frame))
    return {"path": str(path), "seed": seed, "blanked": blanked, "rows": len(frame), "complete_rows": complete}


def _reusable_runs(results: dict[str, Any]) -> dict[str, tuple[dict, str]]:
    """Router runs of this results file by training key, so an identical ablation is not trained again."""
    router = results.get("sections", {}).get("router", {})
    return {run["key"]: (run, f"router run, seed {run['seed']}") for run in router.get("runs", [])}


def _ablation_row(variant: Variant, run: dict[str, Any], source: str, is_recommended: bool) -> dict[str, Any]:
    changes = {k: (Path(v).name if k == "train" else v) for k, v in variant.changes.items()}
    return {
        "group": variant.group, "variant": variant.name, "changes": changes, "source": source,
        "is_recommended": is_recommended, "tasks": run["tasks"], "mean_macro_f1": run["mean_macro_f1"],
        "train_runtime_s": run["train_runtime_s"], "wall_s": run["wall_s"], "reused": bool(run.get("reused")),
    }


def section_ablations(bench: Bench, results: dict[str, Any]) -> dict[str, Any]:
    seed, budget = bench.seeds[0], bench.ablation_budget
    missing = write_missing_labels(bench.base.train, bench.tasks, bench.missing_rates, seed,
                                   bench.out / "ablations" / "data" / f"train_missing_seed{seed}.csv")
    known = _reusable_runs(results)
    recommended_key = training_key(bench.run_config(bench.out, seed, budget))
    rows = []
    for variant in ablation_variants(bench.base, missing["path"]):
        config = bench.run_config(bench.out / "ablations" / variant.slug, seed, budget, **variant.changes)
        key = training_key(config)
        if key in known:
            run, source = known[key]
            logger.info("ablation %s / %s: same training as the %s, not retrained", variant.group, variant.name, source)
        else:
            run, source = train_run(config, f"ablation {variant.group} / {variant.name}", bench.reuse), "trained"
            known[key] = (run, f"{variant.group} / {variant.name} ablation")
        rows.append(_ablation_row(variant, run, source, key == recommended_key))
    return {"seed": seed, "budget": asdict(budget), "main_budget": asdict(bench.budget), "missing_labels": missing,
            "rows": rows}


# --------------------------------------------------------------------------- 6. speed and memory


class StepTimer(TrainerCallback):
    """`time.perf_counter()` at the end of every optimizer step."""

    def __init__(self) -> None:
        self.times: dict[int, float] = {}

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # kernels run asynchronously: the step is only over when they are
        self.times[state.global_step] = time.perf_counter()

    def tickets_per_second(self, batch_size: int, last_step: int) -> float:
        # Every timed batch is full: the timed steps lie inside the first epoch on any real ticket set, and the
        # proportional sampler fills each batch to batch_size.
        seconds = self.times[last_step] - self.times[FIRST_TIMED_STEP]
        return batch_size * (last_step - FIRST_TIMED_STEP) / seconds


@dataclass
class SpeedData:
    """The training tickets tokenized once; both trainers pad them to max_length, so every step costs the same."""

    config: TrainConfig
    specs: list
    dataset: Any
    tokenizer: Any

    @classmethod
    def load(cls, bench: Bench) -> "SpeedData":
        config = replace(bench.base, validation=None, drop_partial_rows=False)
        data = prepare_data(config)
        tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(config.backbone))
        dataset = tokenize_dataset(data.train_texts, data.train_labels, tokenizer, config.max_length)
        return cls(config, data.specs, dataset, tokenizer)

    def collator(self) -> DataCollatorWithPadding:
        return DataCollatorWithPadding(self.tokenizer, padding="max_length", max_length=self.config.max_length)

    def first_task_dataset(self):
        """The same rows with the first task's label only, for a stock single-head model (-100: no label)."""
        labels = [row[0] if row[0] >= 0 else -100 for row in self.dataset["labels"]]
        return self.dataset.remove_columns("labels").add_column("labels", labels)


def _speed_arguments(data: SpeedData, steps: int, output: Path, precision: str) -> dict[str, Any]:
    resolved = resolve_precision(Precision(precision))
    return dict(
        output_dir=str(output), max_steps=steps, per_device_train_batch_size=data.config.batch_size,
        learning_rate=data.config.learning_rate, warmup_steps=0, seed=data.config.seed, report_to="none",
        save_strategy="no", eval_strategy="no", logging_strategy="no", disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        bf16=resolved is Precision.BF16, fp16=resolved is Precision.FP16,
    )


def _router_trainer(data: SpeedData, steps: int, output: Path, precision: str, timer: StepTimer) -> Trainer:
    set_seed(data.config.seed)
    encoder, _ = load_backbone(data.config.backbone)
    model = MultiTaskRouterModel.from_backbone(
        encoder, data.specs, data.config.text_columns, pooling=data.config.pooling,
        classifier_dropout=data.config.dropout, max_length=data.config.max_length)
    # precision= as well: with bf16 and fp16 off, the default "auto" would turn bf16 on again on a GPU.
    args = RouterTrainingArguments(**_speed_arguments(data, steps, output, precision), precision=precision,
                                   loss_weighting="uncertainty", sampling="proportional",
                                   sampling_temperature=data.config.sampling_temperature)
    return MultiTaskTrainer(model=model, args=args, train_dataset=data.dataset, data_collator=data.collator(),
                            callbacks=[timer])


def _plain_trainer(data: SpeedData, steps: int, output: Path, precision: str, timer: StepTimer) -> Trainer:
    set_seed(data.config.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_backbone(data.config.backbone), num_labels=data.specs[0].num_labels)
    args = TrainingArguments(**_speed_arguments(data, steps, output, precision))
    return Trainer(model=model, args=args, train_dataset=data.first_task_dataset(), data_collator=data.collator(),
                   callbacks=[timer])


def _tickets_per_second(make: Callable[..., Trainer], data: SpeedData, steps: int, output: Path,
                        precision: str) -> float:
    timer = StepTimer()
    trainer = make(data, steps, output, precision, timer)
    trainer.train()
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return timer.tickets_per_second(data.config.batch_size, steps)


def training_speed(bench: Bench, data: SpeedData) -> dict[str, Any]:
    steps, out = bench.speed_steps, bench.out / "speed"
    logger.info("training throughput: router vs plain Trainer, %d steps each (timed from step %d)",
                steps, FIRST_TIMED_STEP)
    router_tps = _tickets_per_second(_router_trainer, data, steps, out / "router-trainer", "auto")
    plain_tps = _tickets_per_second(_plain_trainer, data, steps, out / "plain-trainer", "auto")
    return {
        "steps": steps, "timed_steps": f"{FIRST_TIMED_STEP}..{steps}", "batch_size": data.config.batch_size,
        "max_length": data.config.max_length, "padding": "max_length",
        "precision": resolve_precision(Precision.AUTO).value,
        "router_tickets_per_s": router_tps, "plain_tickets_per_s": plain_tps,
        "plain_task": data.specs[0].name, "overhead_pct": (plain_tps / router_tps - 1) * 100,
    }


def _median_seconds(run: Callable[[], Any]) -> float:
    """Median of INFERENCE_REPEATS timed calls after one warm-up (lazy init, allocator growth)."""
    run()
    times = []
    for _ in range(INFERENCE_REPEATS):
        started = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def route_all(routers: Sequence[Router], texts: Sequence[str]) -> None:
    for router in routers:
        router.predict_proba(texts, batch_size=INFERENCE_BATCH)


def inference_speed(router_dir: Path, single_dirs: list[Path], texts: list[str]) -> dict[str, Any]:
    multi = [Router.from_pretrained(router_dir)]
    singles = [Router.from_pretrained(path) for path in single_dirs]
    multi_s = _median_seconds(lambda: route_all(multi, texts))
    single_s = _median_seconds(lambda: route_all(singles, texts))
    heads = len(singles)
    lexical = multi[0].lexical  # the n-gram heads' share of the router's routing time
    lexical_s = _median_seconds(lambda: lexical.predict_proba(texts)) if lexical is not None else None
    return {
        "n_texts": len(texts), "batch_size": INFERENCE_BATCH, "repeats": INFERENCE_REPEATS,
        "device": str(multi[0].device),
        "router_tickets_per_s": len(texts) / multi_s, "single_tickets_per_s": len(texts) / single_s,
        "lexical_ms_per_ticket": None if lexical_s is None else 1000 * lexical_s / len(texts),
        "lexical_share_of_router": None if lexical_s is None else lexical_s / multi_s,
        "ratio": single_s / multi_s, "n_single_models": heads,
        "goal": round(SPEEDUP_GOAL_PER_HEAD * heads, 2), "limit": float(heads),
        "goal_met": single_s / multi_s >= round(SPEEDUP_GOAL_PER_HEAD * heads, 2),
    }


# Runs in a fresh interpreter per setup, so each peak is that setup's own. On Linux the peak is VmHWM, the
# high-water mark of this process's own address space: ru_maxrss survives fork + exec there, so a probe started by
# the bench (itself holding GBs after training) would report the bench's peak, not its own. The peak can be set
# while importing torch/transformers, which hides small models: the RSS still held after routing is reported too,
# and the "imports only" setup is the baseline to subtract.
MEMORY_SCRIPT = """
import json, resource, sys
import psutil, torch
from ticket_router.router import Router

def peak_rss_bytes():
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)

model_dirs, texts_path, batch_size = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
texts = json.loads(open(texts_path, encoding="utf-8").read())
routers = [Router.from_pretrained(path) for path in model_dirs]
for router in routers:
    router.predict_proba(texts, batch_size=batch_size)
rss = peak_rss_bytes()
cuda = int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
after = psutil.Process().memory_info().rss
print(json.dumps({"peak_rss_bytes": int(rss), "rss_after_bytes": int(after), "cuda_peak_allocated_bytes": cuda}))
"""


def peak_memory(model_dirs: list[Path], texts_path: Path) -> dict[str, Any]:
    command = [sys.executable, "-c", MEMORY_SCRIPT, json.dumps([str(p) for p in model_dirs]), str(texts_path),
               str(INFERENCE_BATCH)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe for {[p.name for p in model_dirs]} failed "
                           f"(exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_usage(bench: Bench, router_dir: Path, single_dirs: list[Path], texts: list[str]) -> dict[str, Any]:
    texts_path = bench.out / "speed" / "texts.json"
    texts_path.parent.mkdir(parents=True, exist_ok=True)
    texts_path.write_text(json.dumps(texts), encoding="utf-8")
    setups = {
        "imports only (python + torch + ticket_router)": [],
        "router (one model, all heads)": [router_dir],
        f"{len(single_dirs)} single-task models (all loaded)": single_dirs,
    }
    measured = {}
    for name, dirs in setups.items():
        logger.info("peak memory in a fresh process: %s", name)
        measured[name] = peak_memory(dirs, texts_path)
    return {"n_texts": len(texts), "batch_size": INFERENCE_BATCH, "setups": measured}


def _speed_models(bench: Bench) -> tuple[Path, list[Path]]:
    router_dir, single_dir = bench.model_dirs(bench.seeds[0])
    _require_model(router_dir, "router")
    return router_dir, [_require_model(single_dir / task, "single") for task in bench.tasks]


def section_speed(bench: Bench, results: dict[str, Any]) -> dict[str, Any]:
    """Training overhead of the multi-task trainer, inference ratio and peak memory, on this machine."""
    router_dir, single_dirs = _speed_models(bench)
    training = training_speed(bench, SpeedData.load(bench))
    texts = validation_texts(bench)[: bench.speed_texts]
    logger.info("inference throughput on %d validation tickets: router vs %d single-task models",
                len(texts), len(single_dirs))
    inference = inference_speed(router_dir, single_dirs, texts)
    return {"seed": bench.seeds[0], "training": training, "inference": inference,
            "memory": memory_usage(bench, router_dir, single_dirs, texts)}


# --------------------------------------------------------------------------- 7. GPU


def gpu_precisions() -> list[str]:
    """The precisions to time on this GPU: each mixed precision it supports, then the fp32 reference."""
    return (["bf16"] if torch.cuda.is_bf16_supported() else []) + ["fp16", "fp32"]


def gpu_training_speed(bench: Bench, data: SpeedData, batch_size: int) -> dict[str, Any]:
    """Training tickets/s per precision at one batch size, for the router and a plain one-head Trainer."""
    # A GPU step takes tens of milliseconds, so a few dozen steps time mostly noise: time GPU_STEPS, over the
    # training rows repeated as often as needed to keep every timed batch in the first epoch (batches stay full).
    steps = max(bench.speed_steps, GPU_STEPS)
    repeats = -(-steps * batch_size // len(data.dataset))
    data = replace(data, config=replace(data.config, batch_size=batch_size),
                   dataset=concatenate_datasets([data.dataset] * repeats))
    router, plain = {}, {}
    for precision in gpu_precisions():
        logger.info("GPU training throughput, %s, batch %d, %d steps", precision, batch_size, steps)
        out = bench.out / "gpu" / f"{precision}-b{batch_size}"
        router[precision] = _tickets_per_second(_router_trainer, data, steps, out / "router", precision)
        plain[precision] = _tickets_per_second(_plain_trainer, data, steps, out / "plain", precision)
    return {"batch_size": batch_size, "steps": steps, "tickets_per_s": router, "plain_tickets_per_s": plain,
            "speedup_vs_fp32": {name: tps / router["fp32"] for name, tps in router.items() if name != "fp32"},
            "overhead_pct": {name: (plain[name] / router[name] - 1) * 100 for name in router}}


def section_gpu(bench: Bench, results: dict[str, Any]) -> dict[str, Any]:
    if not torch.cuda.is_available():
        logger.info("no GPU on this machine: GPU rows not measured")
        return {"available": False, "note": "no GPU on this machine"}
    router_dir = _require_model(bench.model_dirs(bench.seeds[0])[0], "router")
    data = SpeedData.load(bench)
    # The config's batch, and a large one: a 22.7M-parameter encoder at batch 16 leaves an H100 mostly idle, so
    # whether mixed precision pays depends on the batch.
    batch_sizes = sorted({data.config.batch_size, GPU_LARGE_BATCH})
    training = [gpu_training_speed(bench, data, batch) for batch in batch_sizes]
    texts = validation_texts(bench)[: bench.speed_texts]
    router = Router.from_pretrained(router_dir, device="cuda")
    seconds = _median_seconds(lambda: route_all([router], texts))
    # The n-gram heads run on the CPU whatever the device: their share says how much of a GPU pass they are.
    lexical = router.lexical
    lexical_s = _median_seconds(lambda: lexical.predict_proba(texts)) if lexical is not None else None
    return {
        "available": True, "device": torch.cuda.get_device_name(), "max_length": data.config.max_length,
        "cpu_threads": torch.get_num_threads(), "training": training,
        "inference": {"n_texts": len(texts), "batch_size": INFERENCE_BATCH, "tickets_per_s": len(texts) / seconds,
                      "lexical_share": None if lexical_s is None else lexical_s / seconds},
    }


SECTION_FUNCTIONS: dict[str, Callable[[Bench, dict[str, Any]], dict[str, Any]]] = {
    "reference": section_reference, "router": section_router, "single": section_single, "shadow": section_shadow,
    "ablations": section_ablations, "speed": section_speed, "gpu": section_gpu,
}


# --------------------------------------------------------------------------- markdown


def _f(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _ms(spread: dict[str, Any] | None, digits: int = 3) -> str:
    """mean ± std over seeds (the mean alone for one seed)."""
    if not spread or spread["mean"] is None:
        return "n/a"
    if spread["std"] is None:
        return _f(spread["mean"], digits)
    return f"{spread['mean']:.{digits}f} ± {spread['std']:.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _provenance(results: dict[str, Any], names: Sequence[str]) -> str:
    """Which command on which machine measured these sections (they may come from separate --only runs)."""
    seen: dict[tuple[str, str], list[str]] = {}
    for name in names:
        run = results["sections"].get(name, {}).get("run")
        if run:
            seen.setdefault((run["command"], run["machine"]), []).append(f"{name} {run['started'][:16]}")
    lines = [f"_Measured by `{cmd}` on {machine} ({', '.join(when)})._" for (cmd, machine), when in seen.items()]
    return "\n".join(lines) if lines else "_Not measured yet._"


# Sections whose figures belong to the models of one run: older than the router section, they describe other models.
ROUTER_BOUND_SECTIONS = ("single", "shadow", "ablations", "speed", "gpu")


def _section_warnings(results: dict[str, Any], names: Sequence[str]) -> list[str]:
    """Lines on sections not measured yet, failed, or measured before the router section they sit beside."""
    lines = []
    router_run = results["sections"].get("router", {}).get("run")
    for name in names:
        if name not in results["sections"]:
            lines.append(f"- section `{name}` not measured yet (`python bench/run.py --only {name}`).")
        run = results["sections"].get(name, {}).get("run")
        if name in ROUTER_BOUND_SECTIONS and run and router_run and run["started"] < router_run["started"]:
            lines.append(f"- ⚠ section `{name}` ({run['started'][:16]}) predates the router section "
                         f"({router_run['started'][:16]}): it describes the models and config of that earlier run "
                         f"(`python bench/run.py --only {name}` renews it).")
        if name in results.get("errors", {}):
            err = results["errors"][name]
            lines.append(f"- ⚠ section `{name}` failed in `{err['command']}` ({err['when'][:16]}): {err['error']}")
    return lines + [""] if lines else []


def _task_names(results: dict[str, Any]) -> list[str]:
    return list(results["settings"]["tasks"])


def _reference_rows(ref: dict[str, Any], tasks: list[str]) -> list[str]:
    rows = []
    for key, title, fit_s in (("majority", "Majority class", None), ("tfidf", "TF-IDF + LogReg", ref["tfidf_fit_s"])):
        cells = " | ".join(f"{_f(ref['tasks'][t][key]['macro_f1'])} | {_f(ref['tasks'][t][key]['accuracy'])}"
                           for t in tasks)
        train = "—" if fit_s is None else _duration(fit_s)
        rows.append(f"| {title} | {cells} | {_f(ref[f'{key}_mean_macro_f1'])} | {train} |")
    return rows


PART_TITLES = {"encoder_only": "encoder heads alone", "lexical_only": "lexical heads alone"}


def _finetune_rows(title: str, summary: dict[str, Any], tasks: list[str]) -> list[str]:
    """The row of the model as it routes, then one row per fused part scored alone (same trainings)."""
    def row(label: str, scored: dict[str, Any], train: str) -> str:
        cells = " | ".join(f"{_ms(scored['tasks'][t]['macro_f1'])} | {_ms(scored['tasks'][t]['accuracy'])}"
                           if t in scored["tasks"] else "n/a | n/a" for t in tasks)
        return f"| {label} | {cells} | {_ms(scored['mean_macro_f1'])} | {train} |"

    train = _duration(summary["train_runtime_s"]["mean"])
    if summary.get("n_reused"):  # --reuse: the time is the original training's
        train += f" ({summary['n_reused']}/{summary['n_seeds']} seed(s) reused from an earlier run)"
    rows = [row(f"{title} ({summary['n_seeds']} seed(s))", summary, train)]
    rows += [row(f"↳ {title}: {PART_TITLES[part]}", summary[part], "(same)") for part in PARTS if part in summary]
    return rows


def _md_main(results: dict[str, Any]) -> list[str]:
    s, tasks = results["sections"], _task_names(results)
    fine_tuned = s.get("router") or s.get("single")
    budget = Budget(**fine_tuned["budget"]).describe() if fine_tuned else "n/a"
    seeds = "; ".join(f"{name}: {', '.join(str(run['seed']) for run in s[name]['runs'])}"
                      for name in ("router", "single") if name in s) or "n/a"
    asked = Budget(**results["settings"]["config_budget"]).describe()
    lines = ["### Quality on the validation set", "",
             f"Per-task macro-F1 and accuracy on the validation file. Fine-tunes: mean ± std over seeds ({seeds}), "
             f"**{budget} per model** (the recommended config asks for {asked}; `--epochs` overrides it for "
             "every fine-tune alike). Train time: per seed, all models of the row. Where the config fuses lexical "
             "heads (`lexical_weight` > 0), the ↳ rows score the same trained models' encoder heads and lexical "
             "heads alone.",
             "", _provenance(results, ["reference", "single", "router"]), ""]
    lines += _section_warnings(results, ["reference", "single", "router"])
    head = " | ".join(f"{t} F1 | {t} acc" for t in tasks)
    lines += [f"| Model | {head} | mean F1 | train time |", "| --- |" + " ---: |" * (2 * len(tasks) + 2)]
    lines += _reference_rows(s["reference"], tasks) if "reference" in s else []
    for name, title in (("single", "Single-task fine-tunes"), ("router", "Router (multi-task)")):
        lines += _finetune_rows(title, s[name]["summary"], tasks) if name in s else []
    return lines + [""]


def _verdict_cell(shadow: dict[str, Any], task: str) -> str:
    cells = []
    for seed in shadow["per_seed"]:
        entry = seed["tasks"][task]
        cells.append(f"{seed['seed']}: {entry['verdict']} ({_f(entry['macro_f1_diff'], sign=True)})")
    return "; ".join(cells)


def _versus_tfidf_cell(shadow: dict[str, Any] | None, task: str) -> str:
    """seed: verdict (router − TF-IDF [95% CI]) for each router seed; n/a before the shadow section computed it."""
    if not shadow or "versus_tfidf" not in shadow:
        return "n/a"
    cells = []
    for seed in shadow["versus_tfidf"]["per_seed"]:
        entry = seed["tasks"][task]
        lo, hi = entry["ci95"]
        cells.append(f"{seed['seed']}: {entry['verdict']} ({_f(entry['macro_f1_diff'], sign=True)} "
                     f"[{_f(lo, sign=True)}, {_f(hi, sign=True)}])")
    return "; ".join(cells)


def _md_bar(results: dict[str, Any]) -> list[str]:
    s, tasks = results["sections"], _task_names(results)
    lines = ["### Does the router clear the bar?", "",
             "Router vs TF-IDF: mean macro-F1 over seeds, and per router seed the paired bootstrap 95% CI of "
             "router − TF-IDF on the same validation rows (seed: verdict (difference [CI])). Router vs single-task: "
             "paired bootstrap 95% CI of the macro-F1 difference per seed (shadow verdicts; seed: verdict "
             "(router − single)).", "",
             _provenance(results, ["reference", "router", "shadow"]), ""]
    lines += _section_warnings(results, ["reference", "router", "shadow"])
    lines += ["| Task | Router F1 | encoder heads alone | TF-IDF F1 | Beats TF-IDF? | Margin | vs TF-IDF per seed "
              "| Router − single (mean) | Verdicts per seed | Seeds worse |",
              "| --- | ---: | ---: | ---: | --- | ---: | --- | ---: | --- | ---: |"]
    ref, router, shadow = s.get("reference"), s.get("router"), s.get("shadow")
    for t in tasks:
        mean = router["summary"]["tasks"][t]["macro_f1"]["mean"] if router else None
        encoder = router["summary"].get("encoder_only", {}).get("tasks", {}).get(t) if router else None
        encoder = _f(encoder["macro_f1"]["mean"]) if encoder else "= router"
        tfidf = ref["tasks"][t]["tfidf"]["macro_f1"] if ref else None
        margin = mean - tfidf if mean is not None and tfidf is not None else None
        beats = "n/a" if margin is None else ("yes" if margin > 0 else "**no**")
        sh = shadow["summary"].get(t) if shadow else None
        diff, verdicts, worse = "n/a", "n/a", "n/a"
        if sh:
            diff, verdicts = _f(sh["mean_diff"], sign=True), _verdict_cell(shadow, t)
            worse = f"{sh['n_worse']}/{sh['n_seeds']}"
        lines.append(f"| {t} | {_f(mean)} | {encoder} | {_f(tfidf)} | {beats} | {_f(margin, sign=True)} | "
                     f"{_versus_tfidf_cell(shadow, t)} | {diff} | {verdicts} | {worse} |")
    return lines + [""]


def _md_ablations(results: dict[str, Any]) -> list[str]:
    tasks, ab = _task_names(results), results["sections"].get("ablations")
    lines = ["### Ablations", ""]
    if ab:
        budget, main = Budget(**ab["budget"]), Budget(**ab["main_budget"])
        miss = ", ".join(f"{v['rate']:.0%} of {t} ({v['column']})" for t, v in ab["missing_labels"]["blanked"].items())
        lines += [f"One seed ({ab['seed']}), **reduced budget: {budget.describe()} per variant** (main table: "
                  f"{main.describe()}), so compare rows with each other, not with the main table. Each row changes "
                  f"one key of the recommended config. Missing labels: a copy of the training file with {miss} "
                  "blanked at random (seeded).", ""]
    lines += [_provenance(results, ["ablations"]), ""] + _section_warnings(results, ["ablations"])
    lines += [f"| Group | Variant | {' | '.join(f'{t} F1' for t in tasks)} | mean F1 | train time | note |",
              "| --- | --- |" + " ---: |" * (len(tasks) + 2) + " --- |"]
    for row in (ab or {}).get("rows", []):
        note = "**= recommended**" if row["is_recommended"] else ""
        if row["source"] != "trained":
            note = f"{note} same training as the {row['source']}".strip()
        if row.get("reused"):
            note = f"{note} reused from an earlier run (--reuse)".strip()
        cells = " | ".join(_f(row["tasks"][t]["macro_f1"]) for t in tasks)
        lines.append(f"| {row['group']} | {row['variant']} | {cells} | {_f(row['mean_macro_f1'])} | "
                     f"{_duration(row['train_runtime_s'])} | {note} |")
    return lines + [""]


def _section_head(results: dict[str, Any], title: str, names: Sequence[str]) -> list[str]:
    """A table section's title, the run that measured it, and a warning for each section not yet run."""
    return [f"### {title}", "", _provenance(results, names), ""] + _section_warnings(results, names)


def _md_speed(results: dict[str, Any]) -> list[str]:
    sp = results["sections"].get("speed")
    lines = _section_head(results, "Speed", ["speed"])
    if not sp:
        return lines
    tr, inf = sp["training"], sp["inference"]
    lines += [
        f"Training: batch {tr['batch_size']}, every ticket padded to {tr['max_length']} tokens, {tr['precision']}, "
        f"timed over steps {tr['timed_steps']}; the plain `Trainer` trains one head ({tr['plain_task']}) with "
        "`AutoModelForSequenceClassification` on the same tokenized data. Inference: "
        f"{inf['n_texts']} validation tickets, batch {inf['batch_size']}, median of {inf['repeats']} after one "
        f"warm-up, on `{inf['device']}`; the single-task models run one after another.", "",
        "| Measure | Router | Baseline | Result |", "| --- | ---: | ---: | --- |",
        f"| training tickets/s (router vs plain single-head Trainer) | {tr['router_tickets_per_s']:.1f} | "
        f"{tr['plain_tickets_per_s']:.1f} | overhead {tr['overhead_pct']:+.1f}% |",
        f"| inference tickets/s (one router pass vs {inf['n_single_models']} single-task models) | "
        f"{inf['router_tickets_per_s']:.1f} | {inf['single_tickets_per_s']:.1f} | **{inf['ratio']:.2f}×** "
        f"(goal ≥ {inf['goal']:.1f}×, limit {inf['limit']:.1f}×: {'met' if inf['goal_met'] else 'not met'}) |",
    ]
    if inf.get("lexical_ms_per_ticket") is not None:
        lines.append(f"| lexical heads' part of one router pass (ms/ticket) | {inf['lexical_ms_per_ticket']:.3f} | "
                     f"— | {100 * inf['lexical_share_of_router']:.1f}% of the router's routing time |")
    lines.append("")
    return lines


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.0f}"


def _md_memory(results: dict[str, Any]) -> list[str]:
    sp = results["sections"].get("speed")
    lines = _section_head(results, "Memory", ["speed"])
    if not sp:
        return lines
    mem = sp["memory"]
    lines += [f"Peak memory of a fresh process that loads the model(s) and routes {mem['n_texts']} validation "
              f"tickets (batch {mem['batch_size']}): its own peak RSS (`VmHWM`; `ru_maxrss` off Linux), and "
              "`torch.cuda.max_memory_allocated` on a GPU.", "",
              "| Setup | peak RSS (MiB) | RSS after routing (MiB) | after routing − imports only (MiB) | "
              "peak CUDA allocated (MiB) |", "| --- | ---: | ---: | ---: | ---: |"]
    setups = list(mem["setups"].values())
    baseline = setups[0]["rss_after_bytes"]  # the imports-only process comes first
    for name, m in mem["setups"].items():
        lines.append(f"| {name} | {_mib(m['peak_rss_bytes'])} | {_mib(m['rss_after_bytes'])} | "
                     f"{_mib(m['rss_after_bytes'] - baseline)} | {_mib(m['cuda_peak_allocated_bytes'])} |")
    return lines + [""]


def _md_gpu(results: dict[str, Any]) -> list[str]:
    gpu = results["sections"].get("gpu")
    lines = _section_head(results, "GPU", ["gpu"])
    if not gpu:
        return lines
    if not gpu["available"]:
        return lines + [f"Not measured: {gpu['note']}.", ""]
    rows = []
    for run in gpu["training"]:
        for name, tps in run["tickets_per_s"].items():
            speedup = run["speedup_vs_fp32"].get(name, 1.0)
            plain = run.get("plain_tickets_per_s", {}).get(name)
            overhead = run.get("overhead_pct", {}).get(name)
            rows.append(f"| router training, batch {run['batch_size']} ({run['steps']} steps), {name} | "
                        f"{tps:.1f} | {speedup:.2f}× | {_f(plain, 1)} | {_f(overhead, 1, sign=True)}% |")
    inference = gpu["inference"]
    share = inference.get("lexical_share")
    return lines + [
        f"`{gpu['device']}`, {gpu['cpu_threads']} CPU threads; router training padded to {gpu['max_length']} tokens, "
        f"timed from step {FIRST_TIMED_STEP}.", "",
        "| Measure | router tickets/s | vs fp32 | plain `Trainer` tickets/s (one head) | router step overhead |",
        "| --- | ---: | ---: | ---: | ---: |", *rows,
        f"| router inference, fp32 weights, batch {inference['batch_size']}, {inference['n_texts']} tickets | "
        f"{inference['tickets_per_s']:.1f} | | | |", "",
        *([f"The n-gram heads run on the CPU in either case: {share:.0%} of the GPU routing time.", ""]
          if share is not None else []),
    ]


def render_markdown(results: dict[str, Any]) -> str:
    st = results["settings"]
    # The last command may have run a single section (`--only`): name it, since the tables merge several runs.
    kind = "quick (`--quick`)" if st["quick"] else "full"
    lines = [f"_Last written {results['finished'][:16]} UTC by `{results['command']}` ({kind} settings). "
             f"Data: `{st['data_dir']}`; recommended config "
             f"`{st['config']}`; backbone {st['backbone']}. Machine of the last run: "
             f"{machine_line(results['machine'])}._", ""]
    for part in (_md_main, _md_bar, _md_ablations, _md_speed, _md_memory, _md_gpu):
        lines += part(results)
    return "\n".join(lines).rstrip() + "\n"


def write_benchmarks_md(path: Path, block: str) -> None:
    """Replace the text between the markers (creating the file or the markers if absent); keep the rest."""
    text = path.read_text(encoding="utf-8") if path.is_file() else MD_HEADER
    section = f"{MARK_BEGIN}\n{block}{MARK_END}"
    begin, end = text.find(MARK_BEGIN), text.find(MARK_END)
    if begin >= 0 and end > begin:
        text = text[:begin] + section + text[end + len(MARK_END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- results and main


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_results(path: Path, merge: bool) -> dict[str, Any]:
    """With --only, the sections of an earlier run are kept and the chosen ones replaced."""
    if merge and path.is_file():
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise InputError(f"--results {path}: not valid JSON ({error}); move it away to start afresh") from None
        results.setdefault("errors", {})
        return results
    return {"schema": 1, "sections": {}, "errors": {}}


def save_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(results), indent=2, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def run_section(name: str, bench: Bench, results: dict[str, Any], results_path: Path) -> bool:
    """Run one section, store it (or its error) and save results.json at once, so a crash loses nothing done."""
    logger.info("=== section %s ===", name)
    started, when = time.perf_counter(), _now()
    try:
        data = SECTION_FUNCTIONS[name](bench, results)
    except Exception as error:  # recorded, logged with traceback and reflected in the exit status; not swallowed
        logger.exception("section %s failed after %.1f s", name, time.perf_counter() - started)
        results["errors"][name] = {"error": f"{type(error).__name__}: {error}", "command": bench.command,
                                   "when": when, "traceback": traceback.format_exc()}
        save_results(results_path, results)
        return False
    wall = round(time.perf_counter() - started, 2)
    data["wall_s"] = wall
    data["run"] = {"command": bench.command, "started": when, "machine": machine_line(bench.machine)}
    results["sections"][name] = json_safe(data)
    results["errors"].pop(name, None)
    results["section_wall_s"] = {n: s["wall_s"] for n, s in results["sections"].items()}
    save_results(results_path, results)
    logger.info("section %s done in %s", name, _duration(wall))
    return True


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    transformers.logging.set_verbosity_warning()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "bench/run.py", *argv])
    args = parse_args(argv)
    results_path = _path(args.results, "bench/results.json")
    md_path = _path(args.benchmarks_md, "BENCHMARKS.md")
    try:
        names = _selected_sections(args.only)
        bench = make_bench(args, command)
        results = load_results(results_path, merge=bool(args.only))
    except InputError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    started_wall, started = time.perf_counter(), _now()
    results.update(command=command, argv=argv, machine=bench.machine, settings=settings(bench), started=started)
    logger.info("bench: sections %s; %s", ", ".join(names), machine_line(bench.machine))
    failed = [name for name in names if not run_section(name, bench, results, results_path)]
    results.update(finished=_now(), wall_s=round(time.perf_counter() - started_wall, 2))
    save_results(results_path, results)
    write_benchmarks_md(md_path, render_markdown(results))
    status = f"FAILED: {', '.join(failed)}" if failed else "ok"
    print(f"bench: {len(names)} section(s) in {_duration(results['wall_s'])} ({status}); "
          f"results -> {results_path}, tables -> {md_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
