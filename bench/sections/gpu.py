"""Section `gpu`: mixed-precision training throughput and inference, only where CUDA is available."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import torch
from datasets import concatenate_datasets

from ticket_router.router import Router

from bench.records import require_model, validation_texts
from bench.settings import Bench
from bench.throughput import (
    INFERENCE_BATCH,
    SpeedData,
    median_seconds,
    plain_trainer,
    route_all,
    router_trainer,
    tickets_per_second,
)

logger = logging.getLogger(__name__)

GPU_LARGE_BATCH = 128  # the GPU section also times training at this batch
GPU_STEPS = 150


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
        router[precision] = tickets_per_second(router_trainer, data, steps, out / "router", precision)
        plain[precision] = tickets_per_second(plain_trainer, data, steps, out / "plain", precision)
    return {"batch_size": batch_size, "steps": steps, "tickets_per_s": router, "plain_tickets_per_s": plain,
            "speedup_vs_fp32": {name: tps / router["fp32"] for name, tps in router.items() if name != "fp32"},
            "overhead_pct": {name: (plain[name] / router[name] - 1) * 100 for name in router}}


def section_gpu(bench: Bench, results: dict[str, Any]) -> dict[str, Any]:
    if not torch.cuda.is_available():
        logger.info("no GPU on this machine: GPU rows not measured")
        return {"available": False, "note": "no GPU on this machine"}
    router_dir = require_model(bench.model_dirs(bench.seeds[0])[0], "router")
    data = SpeedData.load(bench)
    # The config's batch, and a large one: a 22.7M-parameter encoder at batch 16 leaves an H100 mostly idle, so
    # whether mixed precision pays depends on the batch.
    batch_sizes = sorted({data.config.batch_size, GPU_LARGE_BATCH})
    training = [gpu_training_speed(bench, data, batch) for batch in batch_sizes]
    texts = validation_texts(bench)[: bench.speed_texts]
    router = Router.from_pretrained(router_dir, device="cuda")
    seconds = median_seconds(lambda: route_all([router], texts))
    # The n-gram heads run on the CPU whatever the device: their share says how much of a GPU pass they are.
    lexical = router.lexical
    lexical_s = median_seconds(lambda: lexical.predict_proba(texts)) if lexical is not None else None
    return {
        "available": True, "device": torch.cuda.get_device_name(), "max_length": data.config.max_length,
        "cpu_threads": torch.get_num_threads(), "training": training,
        "inference": {"n_texts": len(texts), "batch_size": INFERENCE_BATCH, "tickets_per_s": len(texts) / seconds,
                      "lexical_share": None if lexical_s is None else lexical_s / seconds},
    }
