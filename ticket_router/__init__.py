"""ticket_router: one transformer encoder, one head per routing label (category, urgency, queue...)."""

from .config import TrainConfig
from .errors import InputError
from .losses import LossWeighting
from .modeling import MultiTaskRouterModel, Pooling, RouterConfig
from .router import Router
from .sampler import ProportionalTaskBatchSampler
from .tasks import TaskSpec
from .trainer import MultiTaskTrainer
from .training_args import BatchSampling, Precision, RouterTrainingArguments

__version__ = "0.1.0"

__all__ = [
    "BatchSampling", "InputError", "LossWeighting", "MultiTaskRouterModel", "MultiTaskTrainer", "Pooling",
    "Precision", "ProportionalTaskBatchSampler", "Router", "RouterConfig", "RouterTrainingArguments", "TaskSpec",
    "TrainConfig",
]
