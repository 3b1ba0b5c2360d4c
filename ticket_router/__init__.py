"""ticket_router: one transformer encoder, one head per routing label (category, urgency, queue...)."""

from importlib import import_module

__version__ = "0.1.0"

# Names are imported on first use (PEP 562), so that `import ticket_router` does not import torch: routing with an
# ONNX export (onnx_backend.py) never needs it.
_EXPORTS = {
    "BatchSampling": "training_args", "InputError": "errors", "LossWeighting": "losses",
    "MultiTaskRouterModel": "modeling", "MultiTaskTrainer": "trainer", "Pooling": "modeling",
    "Precision": "training_args", "ProportionalTaskBatchSampler": "sampler", "Router": "router",
    "RouterConfig": "modeling", "RouterTrainingArguments": "training_args", "TaskSpec": "tasks",
    "TrainConfig": "config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
