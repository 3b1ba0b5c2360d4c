"""`MultiTaskTrainer`: the stock `transformers.Trainer` loop with multi-task hooks overridden.

- `compute_loss`: masked per-task cross-entropy (optional class weights), combined by the chosen weighting;
- `get_train_dataloader`: the proportional task batch sampler;
- `get_optimizer_cls_and_kwargs` / `get_decay_parameter_names`: explicit parameter groups, so the learned loss
  log-variances are trained (weight decay 0) and the heads may use their own learning rate;
- `training_step`: drops encoder gradients while the encoder is frozen (before clipping, so the frozen encoder
  does not shrink head updates); gradients are dropped rather than `requires_grad` toggled so distributed
  wrappers keep a fixed parameter set;
- `log`: adds each task's mean loss and current weight to the log history.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import Trainer

from .losses import LossWeighting, combine_task_losses, effective_weights, masked_task_losses
from .sampler import ProportionalTaskBatchSampler
from .training_args import BatchSampling, RouterTrainingArguments

logger = logging.getLogger(__name__)

_LOSS_PARAMETER = "log_vars"


class MultiTaskTrainer(Trainer):
    args: RouterTrainingArguments

    def __init__(self, *args: Any, class_weights: Sequence[torch.Tensor | None] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, RouterTrainingArguments):
            raise TypeError("MultiTaskTrainer needs RouterTrainingArguments")
        self.task_names: list[str] = list(self.model.task_names)
        self.class_weights = class_weights
        self.fixed_weights = self._fixed_weight_tensor()
        self._loss_sums = torch.zeros(len(self.task_names))
        self._loss_counts = torch.zeros(len(self.task_names))

    def _fixed_weight_tensor(self) -> torch.Tensor:
        given = dict(self.args.task_weights or {})
        unknown = sorted(set(given) - set(self.task_names))
        if unknown:
            raise ValueError(f"task_weights names unknown task(s) {unknown}; tasks are {self.task_names}")
        return torch.tensor([float(given.get(name, 1.0)) for name in self.task_names])

    def current_weighting(self) -> LossWeighting:
        weighting = self.args.loss_weighting
        if weighting is LossWeighting.UNCERTAINTY and self.state.global_step < self.args.uncertainty_warmup_steps:
            return LossWeighting.EQUAL
        return weighting

    def _log_vars(self, model: torch.nn.Module) -> torch.Tensor:
        return self.accelerator.unwrap_model(model).log_vars

    def _move_loss_state(self, device: torch.device) -> None:
        """Keep the loss's own tensors where the batch is, moved once rather than copied on every step."""
        if self._loss_sums.device == device:
            return
        if self.class_weights is not None:
            self.class_weights = [None if w is None else w.to(device) for w in self.class_weights]
        self.fixed_weights = self.fixed_weights.to(device)
        self._loss_sums = self._loss_sums.to(device)
        self._loss_counts = self._loss_counts.to(device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        self._move_loss_state(labels.device)
        outputs = model(**inputs)
        losses, present = masked_task_losses(outputs.logits, labels, self.class_weights)
        loss = combine_task_losses(
            losses, present, self.current_weighting(), self._log_vars(model), self.fixed_weights
        )
        if model.training:
            # Summed on the device and read back only when logging: a .cpu() here would stall every GPU step.
            self._loss_sums += losses.detach().float() * present
            self._loss_counts += present.float()
        return (loss, outputs) if return_outputs else loss

    def get_train_dataloader(self) -> DataLoader:
        if self.args.sampling is not BatchSampling.PROPORTIONAL:
            return super().get_train_dataloader()
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        sampler = ProportionalTaskBatchSampler(
            np.asarray(self.train_dataset["labels"]),
            batch_size=self._train_batch_size,
            temperature=self.args.sampling_temperature,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
            lengths=[len(ids) for ids in self.train_dataset["input_ids"]] if self.args.group_by_length else None,
        )
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0,
        )
        return self.accelerator.prepare(loader)

    def get_decay_parameter_names(self, model: torch.nn.Module) -> list[str]:
        return [n for n in super().get_decay_parameter_names(model) if n != _LOSS_PARAMETER]

    def get_optimizer_cls_and_kwargs(self, args: RouterTrainingArguments, model=None):  # type: ignore[override]
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        if model is None:
            return optimizer_cls, kwargs
        decay = set(self.get_decay_parameter_names(model))
        head_lr = args.head_learning_rate or args.learning_rate
        groups: dict[tuple[bool, bool], dict] = {}
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            is_head = not name.startswith("encoder.")
            key = (is_head, name in decay)
            group = groups.setdefault(key, {
                "params": [], "weight_decay": args.weight_decay if key[1] else 0.0,
                "lr": head_lr if is_head else args.learning_rate,
            })
            group["params"].append(parameter)
        kwargs["params"] = list(groups.values())
        return optimizer_cls, kwargs

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.state.global_step < self.args.freeze_encoder_steps:
            for parameter in self.accelerator.unwrap_model(model).encoder.parameters():
                parameter.grad = None
        return loss

    def task_weights_now(self) -> dict[str, float]:
        weights = effective_weights(
            self.current_weighting(), len(self.task_names), self._log_vars(self.model), self.fixed_weights
        )
        return dict(zip(self.task_names, weights))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            sums, counts = self._loss_sums.cpu(), self._loss_counts.cpu()  # one read-back per training log
            if counts.sum() > 0:
                for t, name in enumerate(self.task_names):
                    if counts[t] > 0:
                        logs[f"loss_{name}"] = round(float(sums[t] / counts[t]), 4)
                for name, weight in self.task_weights_now().items():
                    logs[f"weight_{name}"] = round(weight, 4)
                self._loss_sums.zero_()
                self._loss_counts.zero_()
        super().log(logs, start_time)
