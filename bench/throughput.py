"""Training and inference throughput helpers shared by the `speed` and `gpu` sections.

Both trainers see the same tokenized rows padded to max_length, so every step costs the same; only a fixed
number of steps runs, with no saving, evaluation or logging.
"""

from __future__ import annotations

import gc
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from ticket_router.backbone import load_backbone, resolve_backbone
from ticket_router.config import TrainConfig
from ticket_router.data import tokenize_dataset
from ticket_router.modeling import MultiTaskRouterModel
from ticket_router.router import Router
from ticket_router.trainer import MultiTaskTrainer
from ticket_router.training import prepare_data
from ticket_router.training_args import Precision, RouterTrainingArguments, resolve_precision

from bench.settings import FIRST_TIMED_STEP, Bench

logger = logging.getLogger(__name__)

INFERENCE_BATCH, INFERENCE_REPEATS = 32, 3


class StepTimer(TrainerCallback):
    """`time.perf_counter()` at the end of every optimizer step."""

    def __init__(self) -> None:
        self.times: dict[int, float] = {}

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # kernels run asynchronously: the step is only over when they are
        self.times[state.global_step] = time.perf_counter()

    def tickets_per_second(self, batch_size: int, last_step: int) -> float:
        # Every timed batch is full: the timed steps lie inside the first epoch on any real ticket set, and the
        # proportional sampler fills each batch to batch_size.
        seconds = self.times[last_step] - self.times[FIRST_TIMED_STEP]
        return batch_size * (last_step - FIRST_TIMED_STEP) / seconds


@dataclass
class SpeedData:
    """The training tickets tokenized once; both trainers pad them to max_length, so every step costs the same."""

    config: TrainConfig
    specs: list
    dataset: Any
    tokenizer: Any

    @classmethod
    def load(cls, bench: Bench) -> "SpeedData":
        config = replace(bench.base, validation=None, drop_partial_rows=False)
        data = prepare_data(config)
        tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(config.backbone))
        dataset = tokenize_dataset(data.train_texts, data.train_labels, tokenizer, config.max_length)
        return cls(config, data.specs, dataset, tokenizer)

    def collator(self) -> DataCollatorWithPadding:
        return DataCollatorWithPadding(self.tokenizer, padding="max_length", max_length=self.config.max_length)

    def first_task_dataset(self):
        """The same rows with the first task's label only, for a stock single-head model (-100: no label)."""
        labels = [row[0] if row[0] >= 0 else -100 for row in self.dataset["labels"]]
        return self.dataset.remove_columns("labels").add_column("labels", labels)


def _speed_arguments(data: SpeedData, steps: int, output: Path, precision: str) -> dict[str, Any]:
    resolved = resolve_precision(Precision(precision))
    return dict(
        output_dir=str(output), max_steps=steps, per_device_train_batch_size=data.config.batch_size,
        learning_rate=data.config.learning_rate, warmup_steps=0, seed=data.config.seed, report_to="none",
        save_strategy="no", eval_strategy="no", logging_strategy="no", disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        bf16=resolved is Precision.BF16, fp16=resolved is Precision.FP16,
    )


def router_trainer(data: SpeedData, steps: int, output: Path, precision: str, timer: StepTimer) -> Trainer:
    set_seed(data.config.seed)
    encoder, _ = load_backbone(data.config.backbone)
    model = MultiTaskRouterModel.from_backbone(
        encoder, data.specs, data.config.text_columns, pooling=data.config.pooling,
        classifier_dropout=data.config.dropout, max_length=data.config.max_length)
    # precision= as well: with bf16 and fp16 off, the default "auto" would turn bf16 on again on a GPU. The
    # multi-task knobs are the config's; the rest matches the plain Trainer's arguments, so only the step differs.
    args = RouterTrainingArguments(**_speed_arguments(data, steps, output, precision), precision=precision,
                                   loss_weighting=data.config.loss_weighting, sampling=data.config.sampling,
                                   task_weights=data.config.task_weights or None,
                                   sampling_temperature=data.config.sampling_temperature)
    return MultiTaskTrainer(model=model, args=args, train_dataset=data.dataset, data_collator=data.collator(),
                            callbacks=[timer])


def plain_trainer(data: SpeedData, steps: int, output: Path, precision: str, timer: StepTimer) -> Trainer:
    set_seed(data.config.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_backbone(data.config.backbone), num_labels=data.specs[0].num_labels)
    args = TrainingArguments(**_speed_arguments(data, steps, output, precision))
    return Trainer(model=model, args=args, train_dataset=data.first_task_dataset(), data_collator=data.collator(),
                   callbacks=[timer])


def tickets_per_second(make: Callable[..., Trainer], data: SpeedData, steps: int, output: Path,
                        precision: str) -> float:
    timer = StepTimer()
    trainer = make(data, steps, output, precision, timer)
    trainer.train()
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return timer.tickets_per_second(data.config.batch_size, steps)


def median_seconds(run: Callable[[], Any]) -> float:
    """Median of INFERENCE_REPEATS timed calls after one warm-up (lazy init, allocator growth)."""
    run()
    times = []
    for _ in range(INFERENCE_REPEATS):
        started = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def route_all(routers: Sequence[Router], texts: Sequence[str]) -> None:
    for router in routers:
        router.predict_proba(texts, batch_size=INFERENCE_BATCH)
