"""`RouterTrainingArguments`: `transformers.TrainingArguments` plus the multi-task knobs (`settings.MultiTaskKnobs`).

`__post_init__` checks the knobs (strings become enums, bad values are refused naming them) and resolves
`precision="auto"` (bf16 where the GPU supports it, else fp16 on GPU, fp32 on CPU) before the base class
validates bf16/fp16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import TrainingArguments

from .settings import BatchSampling, MultiTaskKnobs, Precision

__all__ = ["BatchSampling", "Precision", "RouterTrainingArguments", "resolve_precision"]


def resolve_precision(precision: Precision) -> Precision:
    if precision is not Precision.AUTO:
        return precision
    if torch.cuda.is_available():
        return Precision.BF16 if torch.cuda.is_bf16_supported() else Precision.FP16
    return Precision.FP32


@dataclass
class RouterTrainingArguments(TrainingArguments, MultiTaskKnobs):
    def __post_init__(self):
        self.check_knobs()
        if not (self.bf16 or self.fp16):  # explicit bf16=/fp16= flags win over `precision`
            resolved = resolve_precision(self.precision)
            self.bf16, self.fp16 = resolved is Precision.BF16, resolved is Precision.FP16
        if self.group_by_length and self.sampling is BatchSampling.RANDOM:
            self.train_sampling_strategy = "group_by_length"  # transformers' own LengthGroupedSampler
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; torch warns on every loader otherwise
        if self.ddp_find_unused_parameters is None:
            # Every parameter gets a gradient each step (absent tasks a zero one, see losses.py; unused loss
            # log-variances one from MultiTaskTrainer), so DDP need not search the graph. Searching would also wrap
            # the model's outputs in DDP's pass-through node, cutting the logits off from the hidden states on
            # which the trainer takes per-task gradients.
            self.ddp_find_unused_parameters = False
        super().__post_init__()
