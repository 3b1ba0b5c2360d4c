"""Section `single`: single-task fine-tunes, same backbone, budget and first seed(s) (`train_baselines`)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from ticket_router.baselines import train_baselines
from ticket_router.config import TrainConfig
from ticket_router.metrics import mean_macro_f1

from bench.records import part_scores, summarise, task_scores
from bench.settings import Bench, shown_path

logger = logging.getLogger(__name__)


def _single_record(config: TrainConfig, summaries: dict[str, dict], wall_s: float) -> dict[str, Any]:
    tasks = {task: task_scores(summary["tasks"][task]) for task, summary in summaries.items()}
    per_task_s = {task: summary.get("train_runtime_s") for task, summary in summaries.items()}
    return {
        "seed": config.seed, "output": shown_path(config.output), "tasks": tasks, "mean_macro_f1": mean_macro_f1(tasks),
        "train_runtime_s": round(sum(s for s in per_task_s.values() if s is not None), 2),
        "per_task_runtime_s": per_task_s, "wall_s": round(wall_s, 2), **part_scores(list(summaries.values())),
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
