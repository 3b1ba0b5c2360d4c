"""Section `speed`: training overhead of the multi-task trainer, inference ratio and peak memory, on this machine."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ticket_router.router import Router
from ticket_router.training_args import Precision, resolve_precision

from bench.memory import peak_memory
from bench.records import require_model, validation_texts
from bench.settings import FIRST_TIMED_STEP, Bench
from bench.throughput import (
    INFERENCE_BATCH,
    INFERENCE_REPEATS,
    SpeedData,
    median_seconds,
    plain_trainer,
    route_all,
    router_trainer,
    tickets_per_second,
)

logger = logging.getLogger(__name__)

SPEEDUP_GOAL_PER_HEAD = 2.8 / 3  # the goal: >= 2.8x for three heads (limit 3.0x)


def training_speed(bench: Bench, data: SpeedData) -> dict[str, Any]:
    steps, out = bench.speed_steps, bench.out / "speed"
    logger.info("training throughput: router vs plain Trainer, %d steps each (timed from step %d)",
                steps, FIRST_TIMED_STEP)
    router_tps = tickets_per_second(router_trainer, data, steps, out / "router-trainer", "auto")
    plain_tps = tickets_per_second(plain_trainer, data, steps, out / "plain-trainer", "auto")
    return {
        "steps": steps, "timed_steps": f"{FIRST_TIMED_STEP}..{steps}", "batch_size": data.config.batch_size,
        "max_length": data.config.max_length, "padding": "max_length",
        "precision": resolve_precision(Precision.AUTO).value,
        "router_tickets_per_s": router_tps, "plain_tickets_per_s": plain_tps,
        "plain_task": data.specs[0].name, "overhead_pct": (plain_tps / router_tps - 1) * 100,
    }


def inference_speed(router_dir: Path, single_dirs: list[Path], texts: list[str]) -> dict[str, Any]:
    multi = [Router.from_pretrained(router_dir)]
    singles = [Router.from_pretrained(path) for path in single_dirs]
    multi_s = median_seconds(lambda: route_all(multi, texts))
    single_s = median_seconds(lambda: route_all(singles, texts))
    heads = len(singles)
    lexical = multi[0].lexical  # the n-gram heads' share of the router's routing time
    lexical_s = median_seconds(lambda: lexical.predict_proba(texts)) if lexical is not None else None
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
        measured[name] = peak_memory(dirs, texts_path, INFERENCE_BATCH)
    return {"n_texts": len(texts), "batch_size": INFERENCE_BATCH, "setups": measured}


def _speed_models(bench: Bench) -> tuple[Path, list[Path]]:
    router_dir, single_dir = bench.model_dirs(bench.seeds[0])
    require_model(router_dir, "router")
    return router_dir, [require_model(single_dir / task, "single") for task in bench.tasks]


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
