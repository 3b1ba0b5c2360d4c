"""ticket_router: one transformer encoder, one head per routing label (category, urgency, queue...).

`Router` is the entry point: `Router.from_pretrained(dir)` loads a trained model (encoder, heads, lexical heads,
fusion weight) and `route`s tickets. The names below are imported on first use, so that `import ticket_router`
and `ticket-router --help` do not load torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "BatchSampling": "training_args",
    "InputError": "errors",
    "LossWeighting": "losses",
    "MultiTaskRouterModel": "modeling",
    "MultiTaskTrainer": "trainer",
    "Pooling": "modeling",
    "Precision": "training_args",
    "ProportionalTaskBatchSampler": "sampler",
    "Router": "router",
    "RouterConfig": "modeling",
    "RouterSettings": "router",
    "RouterTrainingArguments": "training_args",
    "TaskSpec": "tasks",
    "TrainConfig": "config",
    "multitask_f1_path": "multitask_f1",
    "multitask_compute_metrics": "multitask_f1",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ticket_router' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .config import TrainConfig
    from .errors import InputError
    from .multitask_f1 import multitask_compute_metrics, multitask_f1_path
    from .losses import LossWeighting
    from .modeling import MultiTaskRouterModel, Pooling, RouterConfig
    from .router import Router, RouterSettings
    from .sampler import ProportionalTaskBatchSampler
    from .tasks import TaskSpec
    from .trainer import MultiTaskTrainer
    from .training_args import BatchSampling, Precision, RouterTrainingArguments
