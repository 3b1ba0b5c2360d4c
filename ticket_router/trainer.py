"""`MultiTaskTrainer`: the stock `transformers.Trainer` loop with multi-task hooks overridden.

- `compute_loss`: masked per-task cross-entropy (optional class weights), combined by the chosen weighting;
- `get_train_dataloader`: the proportional task batch sampler;
- `get_optimizer_cls_and_kwargs` / `get_decay_parameter_names`: explicit parameter groups, so the learned loss
  log-variances are trained (weight decay 0) and the heads may use their own learning rate;
- `training_step`: drops encoder gradients while the encoder is frozen (before clipping, so the frozen encoder
  does not shrink head updates); gradients are dropped rather than `requires_grad` toggled so distributed
  wrappers keep a fixed parameter set;
- `log`: adds each task's mean loss and current weight to the log history.

Multi-task balancing (issue 12, `balancing.py`):
- DWA / GradNorm / FAMO keep their state in a `TaskBalancer`; `compute_loss` feeds it each batch's losses and
  uses its multipliers. Its state travels in every checkpoint as `balancer.json` (written on save, read by
  `train(resume_from_checkpoint=...)`).
- Per-task gradients are taken on the encoder's output h (last hidden states), where they cost one pass through
  pooling and a head each, not one through the encoder: GradNorm reads their norms; PCGrad projects them and the
  encoder receives the result through the surrogate term <h, g> - <h, g>.detach() (same loss value, one backward,
  so gradient accumulation, mixed precision and distributed wrappers see an ordinary loss).
- Every `gradient_conflict_steps` steps each task's gradient on the encoder's parameters (h's gradient pulled back
  through the encoder, one extra encoder backward per task) is logged: `grad_norm_<task>` (of the weighted task
  loss, as the encoder receives it) and `grad_cos_<a>_<b>`.

Several processes (`accelerate launch`, DDP): every per-task quantity above is taken over the global batch through
the reductions of `distributed.py` (masked means, GradNorm's norms, PCGrad's Gram matrix, the conflict log's
gradients), so N processes make the update one process makes on the same rows and keep the same balancer state;
the proportional sampler deals each global batch out to the processes (`sampler.py`). With one process nothing is
reduced.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from .balancing import BalancerSettings, conflict_stats, make_balancer, pcgrad_coefficients, summarise_conflict
from .distributed import GlobalTaskLosses, global_gradient, global_gradient_norms, global_gram, global_task_losses
from .losses import capped_log_vars, combine_task_losses, effective_weights, masked_task_sums
from .sampler import ProportionalTaskBatchSampler
from .settings import BatchSampling, GradientSurgery, LossWeighting
from .training_args import RouterTrainingArguments

logger = logging.getLogger(__name__)

_LOSS_PARAMETER = "log_vars"
BALANCER_STATE = "balancer.json"


class _BalancerCheckpoint(TrainerCallback):
    """Writes the balancer's state into each checkpoint the Trainer saves."""

    def __init__(self, trainer: "MultiTaskTrainer"):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        if self.trainer.balancer is not None and state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / BALANCER_STATE).write_text(json.dumps(self.trainer.balancer_state()) + "\n")


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
        settings = BalancerSettings(self.args.dwa_temperature, self.args.dwa_window_steps, self.args.gradnorm_alpha,
                                    self.args.balancer_learning_rate)
        self.balancer = make_balancer(self.args.loss_weighting.value, len(self.task_names), settings)
        self._balance_weights = torch.ones(len(self.task_names))
        self._last_conflict_step = -1
        self.conflict_seconds = 0.0  # time spent logging gradient conflict (its share of training is reported)
        self.add_callback(_BalancerCheckpoint(self))

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
        self._balance_weights = self._balance_weights.to(device)
        self._loss_sums = self._loss_sums.to(device)
        self._loss_counts = self._loss_counts.to(device)

    def _multipliers(self) -> torch.Tensor:
        """The weights of the loss combination other than uncertainty's (which are learned in the model)."""
        return self._balance_weights if self.balancer is not None else self.fixed_weights

    def _split_at_encoder(self) -> bool:
        """Whether the heads and the encoder get separate gradients (per-task gradients on h every step)."""
        return self.args.gradient_surgery is GradientSurgery.PCGRAD or (
            self.balancer is not None and self.balancer.needs_task_gradients)

    def _conflict_due(self) -> bool:
        every = self.args.gradient_conflict_steps
        step = self.state.global_step
        return every > 0 and step % every == 0 and step != self._last_conflict_step

    def _reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(tensor, reduction="sum")

    def _world_size(self, model) -> int:
        """Processes that train together (evaluation losses stay per process: the Trainer gathers them itself)."""
        return self.accelerator.num_processes if model.training else 1

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        self._move_loss_state(labels.device)
        split = model.training and self._split_at_encoder()
        conflict = model.training and self._conflict_due()
        outputs = model(**inputs, return_hidden=conflict, detach_hidden=split)
        sums = masked_task_sums(outputs.logits, labels, self.class_weights)
        task = global_task_losses(sums, self._reduce, self._world_size(model))
        if model.training and self.balancer is not None:
            losses_now, present_now = task.values.tolist(), task.present.tolist()
            self.balancer.observe_losses(losses_now, present_now)
            self._balance_weights = torch.tensor(self.balancer.weights(losses_now), device=labels.device)
        loss = combine_task_losses(task.train, task.present, self.current_weighting(), self._log_vars(model),
                                   self._multipliers(), self.args.uncertainty_weight_floor)
        if model.training and self._world_size(model) > 1 and self.current_weighting() is not LossWeighting.UNCERTAINTY:
            # DDP waits for every parameter's gradient: the unused log-variances get a zero one, which
            # `training_step` drops again so that the optimizer skips them as it does with one process.
            loss = loss + 0.0 * self._log_vars(model).sum()
        if split or conflict:
            loss = self._task_gradients(model, outputs, task, loss, split, conflict)
        if model.training:
            # Summed on the device and read back only when logging: a .cpu() here would stall every GPU step.
            self._loss_sums += task.values.float() * task.present
            self._loss_counts += task.present.float()
        return (loss, outputs) if return_outputs else loss

    def _weights_tensor(self, model) -> torch.Tensor:
        """Each task loss's current multiplier, detached (the uncertainty weights with their floor)."""
        if self.current_weighting() is LossWeighting.UNCERTAINTY:
            return torch.exp(-capped_log_vars(self._log_vars(model).detach(), self.args.uncertainty_weight_floor))
        if self.current_weighting() is LossWeighting.EQUAL:
            return torch.ones_like(self._multipliers())
        return self._multipliers().float()

    def _task_gradients(self, model, outputs, task: GlobalTaskLosses, loss, split: bool, conflict: bool) -> torch.Tensor:
        """Per-task gradients on the encoder output h: GradNorm's norms, the conflict log, PCGrad's surgery.

        Returns the loss to back-propagate: unchanged, or with `split` the surrogate that hands the encoder the
        (projected) sum of the weighted task gradients while the heads keep their own. A task present in the global
        batch but not in this process's gets a zero gradient here, so every process reduces the same tasks."""
        present_now = task.present.tolist()
        hidden = outputs.head_hidden
        raw = [torch.autograd.grad(task.train[t], hidden, retain_graph=True)[0] if seen else None
               for t, seen in enumerate(present_now)]
        world = self._world_size(model)
        if split and self.balancer is not None and self.balancer.needs_task_gradients:
            live_norms = iter(global_gradient_norms([g for g in raw if g is not None], self._reduce, world))
            norms = [0.0 if g is None else next(live_norms) for g in raw]
            self.balancer.observe_gradient_norms(norms, task.values.tolist(), present_now)
        weights = self._weights_tensor(model)
        weighted = [None if g is None else g * weights[t] for t, g in enumerate(raw)]
        if conflict:
            self._log_conflict(model, outputs.encoder_hidden, weighted)
        if not split:
            return loss
        live = [g for g in weighted if g is not None]
        if self.args.gradient_surgery is GradientSurgery.PCGRAD and len(live) > 1:
            # The same seed on every process: the same projection order.
            generator = torch.Generator().manual_seed(self.args.seed * 100_003 + self.state.global_step)
            coefficients = pcgrad_coefficients(global_gram(live, self._reduce, world), generator).tolist()
            combined = sum(c * g for c, g in zip(coefficients, live))
        else:
            combined = torch.stack(live).sum(0)
        surrogate = (outputs.encoder_hidden * combined.detach()).sum()
        return loss + surrogate - surrogate.detach()

    def _log_conflict(self, model, encoder_hidden: torch.Tensor, weighted: list[torch.Tensor | None]) -> None:
        started = time.perf_counter()
        self._last_conflict_step = self.state.global_step
        params = [p for p in self.accelerator.unwrap_model(model).encoder.parameters() if p.requires_grad]
        grads = []
        for g in weighted:
            if g is None:
                grads.append(None)
                continue
            parts = torch.autograd.grad(encoder_hidden, params, g, retain_graph=True, allow_unused=True)
            flat = torch.cat([p.reshape(-1) for p in parts if p is not None])
            grads.append(global_gradient(flat, self._reduce, self._world_size(model)))
        stats = conflict_stats(self.task_names, grads)
        self.conflict_seconds += time.perf_counter() - started
        self.log({key: round(value, 6) for key, value in stats.items()})

    def conflict_summary(self, train_seconds: float | None = None) -> dict:
        """`gradient_conflict` of metrics.json: per pair mean cosine and share of negative steps, mean norms."""
        summary = summarise_conflict(self.state.log_history)
        if summary:
            summary["every_steps"] = self.args.gradient_conflict_steps
            summary["seconds"] = round(self.conflict_seconds, 2)
            if train_seconds:
                summary["share_of_training_time"] = round(self.conflict_seconds / train_seconds, 4)
        return summary

    def balancer_state(self) -> dict:
        return {"balancer": self.balancer.state_dict(), "weights": self._balance_weights.tolist()}

    def load_balancer_state(self, checkpoint: str | Path) -> None:
        path = Path(checkpoint) / BALANCER_STATE
        if self.balancer is None or not path.is_file():
            return
        state = json.loads(path.read_text())
        self.balancer.load_state_dict(state["balancer"])
        self._balance_weights = torch.tensor(state["weights"], device=self._balance_weights.device)
        logger.info("Restored the %s balancer's state from %s", self.args.loss_weighting.value, path)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        if resume_from_checkpoint is True:  # resolved here too, to read the balancer state beside the weights
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir) or True  # none: Trainer's error
        if isinstance(resume_from_checkpoint, str):
            self.load_balancer_state(resume_from_checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

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
            num_shards=self._sampler_shards(),
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

    def _sampler_shards(self) -> int:
        """Processes among which accelerate's `BatchSamplerShard` hands out whole batches, one each in turn.

        With `split_batches` accelerate slices each batch instead; the sampler then draws the global batch as one."""
        return 1 if self.accelerator.split_batches else self.accelerator.num_processes

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
        if self.current_weighting() is not LossWeighting.UNCERTAINTY:
            self._log_vars(model).grad = None  # see compute_loss
        if self.state.global_step < self.args.freeze_encoder_steps:
            for parameter in self.accelerator.unwrap_model(model).encoder.parameters():
                parameter.grad = None
        return loss

    def task_weights_now(self) -> dict[str, float]:
        weights = effective_weights(self.current_weighting(), len(self.task_names), self._log_vars(self.model),
                                    self._multipliers(), self.args.uncertainty_weight_floor)
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
