"""`RouterTrainingArguments`: `transformers.TrainingArguments` plus the multi-task knobs.

`__post_init__` turns strings into enums, rejects bad values naming them, and resolves `precision="auto"`
(bf16 where the GPU supports it, else fp16 on GPU, fp32 on CPU) before the base class validates bf16/fp16.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import torch
from transformers import TrainingArguments

from .balancing import GradientSurgery
from .losses import LossWeighting


class BatchSampling(str, Enum):
    PROPORTIONAL = "proportional"  # every batch holds every task, shares ∝ label counts^(1/T)
    RANDOM = "random"  # the Trainer's plain shuffled order


class Precision(str, Enum):
    AUTO = "auto"
    BF16 = "bf16"
    FP16 = "fp16"
    FP32 = "fp32"


def _enum(enum_cls: type[Enum], value, name: str):
    try:
        return enum_cls(value)
    except ValueError:
        options = ", ".join(repr(m.value) for m in enum_cls)
        raise ValueError(f"{name}={value!r} is not valid; choose one of {options}") from None


def resolve_precision(precision: Precision) -> Precision:
    if precision is not Precision.AUTO:
        return precision
    if torch.cuda.is_available():
        return Precision.BF16 if torch.cuda.is_bf16_supported() else Precision.FP16
    return Precision.FP32


@dataclass
class RouterTrainingArguments(TrainingArguments):
    loss_weighting: LossWeighting | str = field(
        default=LossWeighting.UNCERTAINTY, metadata={"help": "equal, fixed (task_weights) or uncertainty (learned)."}
    )
    task_weights: dict[str, float] | None = field(
        default=None, metadata={"help": "Per-task loss weights for loss_weighting='fixed' (missing tasks: 1.0)."}
    )
    uncertainty_warmup_steps: int = field(
        default=0, metadata={"help": "Steps of equal weighting before the learned uncertainty weights take over."}
    )
    sampling: BatchSampling | str = field(default=BatchSampling.PROPORTIONAL, metadata={"help": "proportional or random."})
    sampling_temperature: float = field(default=1.0, metadata={"help": "T=1 proportional to label counts, large T uniform."})
    group_by_length: bool = field(
        default=False, metadata={"help": "Batch tickets of similar length together so padding shrinks (faster)."}
    )
    class_weights: bool = field(default=False, metadata={"help": "Inverse-frequency class weights in each task loss."})
    freeze_encoder_steps: int = field(default=0, metadata={"help": "Train only the heads for the first K steps."})
    head_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the heads and loss weights (default: learning_rate)."}
    )
    precision: Precision | str = field(default=Precision.AUTO, metadata={"help": "auto, bf16, fp16 or fp32."})
    # --- multi-task balancing (issue 12; balancing.py) ---
    gradient_surgery: GradientSurgery | str = field(
        default=GradientSurgery.NONE, metadata={"help": "none or pcgrad (on the encoder's output, any weighting)."})
    gradient_conflict_steps: int = field(
        default=50, metadata={"help": "Log per-task encoder gradient norms and cosines every N steps (0: off)."})
    uncertainty_weight_floor: float = field(
        default=0.0, metadata={"help": "Lowest weight learned uncertainty weighting may give a task (0: none)."})
    dwa_temperature: float = field(default=2.0, metadata={"help": "DWA softmax temperature."})
    dwa_window_steps: int = field(default=25, metadata={"help": "DWA compares mean losses over windows of N steps."})
    gradnorm_alpha: float = field(default=1.5, metadata={"help": "GradNorm asymmetry: how hard slow tasks are pushed."})
    balancer_learning_rate: float = field(default=0.025, metadata={"help": "Learning rate of GradNorm/FAMO weights."})

    def __post_init__(self):
        self.loss_weighting = _enum(LossWeighting, self.loss_weighting, "loss_weighting")
        self.sampling = _enum(BatchSampling, self.sampling, "sampling")
        self.precision = _enum(Precision, self.precision, "precision")
        self.gradient_surgery = _enum(GradientSurgery, self.gradient_surgery, "gradient_surgery")
        for name in ("gradient_conflict_steps", "uncertainty_weight_floor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 0")
        for name in ("dwa_temperature", "dwa_window_steps", "balancer_learning_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0")
        if self.gradnorm_alpha < 0:
            raise ValueError(f"gradnorm_alpha={self.gradnorm_alpha!r} must be >= 0")
        if self.uncertainty_weight_floor >= 1:
            raise ValueError(f"uncertainty_weight_floor={self.uncertainty_weight_floor!r} must be < 1")
        if self.sampling_temperature <= 0:
            raise ValueError(f"sampling_temperature={self.sampling_temperature!r} must be > 0")
        for name in ("uncertainty_warmup_steps", "freeze_encoder_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 0")
        if self.head_learning_rate is not None and self.head_learning_rate <= 0:
            raise ValueError(f"head_learning_rate={self.head_learning_rate!r} must be > 0")
        for task, weight in (self.task_weights or {}).items():
            if weight < 0:
                raise ValueError(f"task_weights[{task!r}]={weight!r} must be >= 0")
        if not (self.bf16 or self.fp16):  # explicit bf16=/fp16= flags win over `precision`
            resolved = resolve_precision(self.precision)
            self.bf16, self.fp16 = resolved is Precision.BF16, resolved is Precision.FP16
        if self.group_by_length and self.sampling is BatchSampling.RANDOM:
            self.train_sampling_strategy = "group_by_length"  # transformers' own LengthGroupedSampler
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; torch warns on every loader otherwise
        super().__post_init__()
