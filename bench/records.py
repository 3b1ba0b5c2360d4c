"""What the fine-tuning sections record per training, and their spread over seeds."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ticket_router.config import TrainConfig
from ticket_router.data import join_text_columns, read_table
from ticket_router.errors import InputError
from ticket_router.metrics import mean_macro_f1
from ticket_router.training import train_or_reuse, training_key

from bench.settings import PARTS, Bench, shown_path

logger = logging.getLogger(__name__)


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and sample std over seeds (std None for one seed); None values (no gold labels) are left out."""
    kept = [float(v) for v in values if v is not None]
    return {
        "mean": statistics.fmean(kept) if kept else None,
        "std": statistics.stdev(kept) if len(kept) > 1 else None,
        "values": list(values),
    }


def task_scores(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: metrics.get(key) for key in ("macro_f1", "accuracy", "n")}


def part_scores(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """{part: {"tasks", "mean_macro_f1"}} over the tasks of one or more metrics.json summaries (one per model)."""
    parts = {}
    for part in PARTS:
        tasks = {name: task_scores(m) for s in summaries for name, m in s.get(part, {}).get("tasks", {}).items()}
        if tasks:
            parts[part] = {"tasks": tasks, "mean_macro_f1": mean_macro_f1(tasks)}
    return parts


def run_record(config: TrainConfig, summary: dict[str, Any], wall_s: float) -> dict[str, Any]:
    tasks = {name: task_scores(metrics) for name, metrics in summary["tasks"].items()}
    return {
        "seed": config.seed, "output": shown_path(config.output), "key": training_key(asdict(config)), "tasks": tasks,
        "mean_macro_f1": mean_macro_f1(tasks), "train_runtime_s": summary.get("train_runtime_s"),
        "train_samples_per_second": summary.get("train_samples_per_second"),
        "global_steps": summary.get("global_steps"), "wall_s": round(wall_s, 2), **part_scores([summary]),
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
        "tasks": {t: {m: spread([r["tasks"][t][m] for r in scored]) for m in ("macro_f1", "accuracy")} for t in tasks},
        "mean_macro_f1": spread([r["mean_macro_f1"] for r in scored]),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task mean ± std of macro-F1 and accuracy over seeds (of each fused part too), and of the training cost."""
    summary = {
        "n_seeds": len(runs), **_score_spread(runs),
        "train_runtime_s": spread([r["train_runtime_s"] for r in runs]),
        "train_samples_per_second": spread([r.get("train_samples_per_second") for r in runs]),
        "wall_s": spread([r["wall_s"] for r in runs]),
        "n_reused": sum(bool(r.get("reused")) for r in runs),
    }
    for part in PARTS:
        if all(part in r for r in runs):
            summary[part] = _score_spread([r[part] for r in runs])
    return summary


def require_model(path: Path, section: str) -> Path:
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: no trained model; run the {section} section first (--only {section})")
    return path


def validation_texts(bench: Bench) -> list[str]:
    return join_text_columns(read_table(bench.base.validation), bench.base.text_columns, bench.base.validation)
