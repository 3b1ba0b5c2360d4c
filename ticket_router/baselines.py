"""Single-task baselines: one router per task, same backbone, seed, length and budget as the multi-task run.

Each is trained only on the rows labeled for its task (`drop_partial_rows` on a one-task config) with plain
equal weighting (loss balancing means nothing for one task) and saved as `OUTPUT/<task>/`, a normal
ticket_router model that `predict`, `evaluate` and `shadow` load.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from .config import TrainConfig
from .tasks import parse_task_mapping
from .training import train_or_reuse

logger = logging.getLogger(__name__)


def baseline_config(config: TrainConfig, task: str, column: str) -> TrainConfig:
    return replace(
        config,
        tasks={task: column},
        output=str(Path(config.output) / task),
        drop_partial_rows=True,
        loss_weighting="equal",
        task_weights={},
    )


def train_baselines(config: TrainConfig, reuse: bool = False) -> dict[str, dict]:
    """One single-task router per task under `config.output`; `reuse` keeps finished ones (`train_or_reuse`)."""
    config.validate()
    summaries = {}
    for task, column in parse_task_mapping(config.tasks).items():
        logger.info("Training the single-task baseline for %r (column %r)", task, column)
        summaries[task] = train_or_reuse(baseline_config(config, task, column), reuse)
    (Path(config.output) / "baselines.json").write_text(json.dumps(summaries, indent=2, sort_keys=True) + "\n")
    return summaries
