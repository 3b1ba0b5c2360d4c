"""Section `router`: the recommended config over seeds (`train_or_reuse`; `--reuse` keeps finished ones)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from bench.records import summarise, train_run
from bench.settings import Bench


def section_router(bench: Bench, results: dict[str, Any]) -> dict[str, Any]:
    runs = []
    for i, seed in enumerate(bench.seeds, 1):
        config = bench.run_config(bench.model_dirs(seed)[0], seed, bench.budget)
        runs.append(train_run(config, f"router {i}/{len(bench.seeds)}", bench.reuse))
    return {"budget": asdict(bench.budget), "runs": runs, "summary": summarise(runs)}
