"""The `train` job: read data, build task specs, fine-tune with `MultiTaskTrainer`, save one model directory.

The model directory (`config.output`) holds model.safetensors + config.json (encoder config, task specs, label
maps), the tokenizer, `training_config.json`, `log_history.json`, with `lexical_weight > 0` the lexical heads
(`lexical.json`, `lexical.safetensors`) and, with a validation file, `metrics.json`: the scores of the saved model
as `Router` uses it, plus, when lexical heads are fused, those of the encoder heads and the lexical heads alone.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, set_seed

from .backbone import load_backbone
from .config import TrainConfig
from .data import build_task_specs, encode_labels, join_text_columns, label_counts, read_table, tokenize_dataset
from .errors import InputError
from .lexical import CONFIG_NAME as LEXICAL_CONFIG
from .lexical import WEIGHTS_NAME as LEXICAL_WEIGHTS
from .lexical import LexicalHeads, LexicalSettings, fuse, softmax
from .losses import inverse_frequency_weights
from .metrics import compute_metrics_fn, multitask_metrics
from .modeling import MultiTaskRouterModel
from .router import Router
from .tasks import TaskSpec, parse_task_mapping
from .trainer import MultiTaskTrainer
from .training_curves import draw_training_curves
from .training_args import RouterTrainingArguments

logger = logging.getLogger(__name__)

# issue 12's settings, passed through unchanged from TrainConfig to RouterTrainingArguments
BALANCING_KEYS = ("gradient_surgery", "gradient_conflict_steps", "uncertainty_weight_floor", "dwa_temperature",
                  "dwa_window_steps", "gradnorm_alpha", "balancer_learning_rate")


@dataclass
class PreparedData:
    specs: list[TaskSpec]
    train_texts: list[str]
    train_labels: np.ndarray
    eval_texts: list[str] | None = None
    eval_labels: np.ndarray | None = None


def _log_label_summary(labels: np.ndarray, specs: list[TaskSpec], source: str) -> None:
    for t, spec in enumerate(specs):
        labeled = int((labels[:, t] >= 0).sum())
        logger.info("%s: task %r (column %r): %d/%d rows labeled, %d classes",
                    source, spec.name, spec.column, labeled, len(labels), spec.num_labels)
    unlabeled = int((labels < 0).all(axis=1).sum())
    if unlabeled:
        logger.warning("%s: %d row(s) have no label for any task; they cannot train any head", source, unlabeled)


def prepare_data(config: TrainConfig) -> PreparedData:
    """Read and encode the training (and validation) data, refusing bad input with one-line errors."""
    mapping = parse_task_mapping(config.tasks)
    table = read_table(config.train)
    specs = build_task_specs(table, mapping, config.train)
    texts = join_text_columns(table, config.text_columns, config.train)
    labels = encode_labels(table, specs, config.train)
    if config.drop_partial_rows:
        keep = (labels >= 0).all(axis=1)
        logger.info("drop_partial_rows: keeping %d of %d rows (those labeled for every task)", keep.sum(), len(keep))
        texts, labels = [t for t, k in zip(texts, keep) if k], labels[keep]
    _log_label_summary(labels, specs, config.train)
    data = PreparedData(specs, texts, labels)
    if config.validation:
        eval_table = read_table(config.validation)
        data.eval_texts = join_text_columns(eval_table, config.text_columns, config.validation)
        data.eval_labels = encode_labels(eval_table, specs, config.validation, strict=config.strict)
    return data


def training_arguments(config: TrainConfig, has_eval: bool) -> RouterTrainingArguments:
    strategy = ("steps" if config.eval_steps else "epoch") if has_eval else "no"
    return RouterTrainingArguments(
        output_dir=str(Path(config.output) / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        head_learning_rate=config.head_learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,
        seed=config.seed,
        eval_strategy=strategy,
        eval_steps=config.eval_steps,
        save_steps=config.eval_steps or 500,
        save_strategy=strategy if has_eval else "epoch",
        save_total_limit=1,
        load_best_model_at_end=has_eval,
        metric_for_best_model="mean_macro_f1" if has_eval else None,
        greater_is_better=True,
        logging_steps=config.logging_steps,
        report_to="none",
        loss_weighting=config.loss_weighting,
        task_weights=config.task_weights or None,
        uncertainty_warmup_steps=config.uncertainty_warmup_steps,
        sampling=config.sampling,
        sampling_temperature=config.sampling_temperature,
        class_weights=config.class_weights,
        group_by_length=config.group_by_length,
        freeze_encoder_steps=config.freeze_encoder_steps,
        precision=config.precision,
        **{name: getattr(config, name) for name in BALANCING_KEYS},
    )


def train_router(config: TrainConfig) -> dict:
    """Train, save and (with validation data) evaluate a router; returns the summary written to metrics.json."""
    config.validate()
    set_seed(config.seed)
    data = prepare_data(config)
    try:
        args = training_arguments(config, has_eval=data.eval_texts is not None)
    except ValueError as error:  # bad enum values and ranges, named by RouterTrainingArguments
        raise InputError(str(error)) from None
    encoder, tokenizer = load_backbone(config.backbone)
    options = dict(text_columns=config.text_columns, pooling=config.pooling, classifier_dropout=config.dropout,
                   max_length=config.max_length, backbone=config.backbone)
    try:
        model = (MultiTaskRouterModel.branched_from_backbone(encoder, data.specs, config.task_specific_layers, **options)
                 if config.task_specific_layers else MultiTaskRouterModel.from_backbone(encoder, data.specs, **options))
    except ValueError as error:  # more task-specific layers than the encoder has
        raise InputError(str(error)) from None
    train_dataset = tokenize_dataset(data.train_texts, data.train_labels, tokenizer, config.max_length)
    eval_dataset, eval_order = None, None
    if data.eval_texts is not None:
        eval_dataset = tokenize_dataset(data.eval_texts, data.eval_labels, tokenizer, config.max_length)
        # Evaluation batches of similar length pad less (about 1.4x faster on ticket text).
        eval_order = np.argsort([len(ids) for ids in eval_dataset["input_ids"]], kind="stable")
        eval_dataset = eval_dataset.select(eval_order.tolist())
    counts = label_counts(data.train_labels, data.specs)
    class_weights = [inverse_frequency_weights(counts[s.name]) for s in data.specs] if config.class_weights else None
    callbacks = []
    if config.early_stopping_patience and eval_dataset is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    trainer = MultiTaskTrainer(
        model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
        data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
        compute_metrics=compute_metrics_fn([s.name for s in data.specs]) if eval_dataset is not None else None,
        class_weights=class_weights, callbacks=callbacks,
    )
    started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=True if config.resume else None)
    train_seconds = time.perf_counter() - started
    eval_texts = None if eval_order is None else [data.eval_texts[i] for i in eval_order]
    return _save_outputs(trainer, config, eval_dataset, eval_texts, data, train_output.metrics, train_seconds)


def trained_with(config: TrainConfig) -> bool:
    """Whether `config.output` holds a finished, scored training with this very config (its output aside)."""
    output = Path(config.output)
    files = [output / name for name in ("training_config.json", "model.safetensors", "metrics.json")]
    if not all(f.is_file() for f in files):
        return False
    return _comparable(json.loads(files[0].read_text())) == _comparable(json.loads(config.to_json()))


def _comparable(values: dict) -> dict:
    """A saved config without its output, data paths resolved (a relative and an absolute path to one file agree)."""
    values = {key: value for key, value in values.items() if key != "output"}
    for key in ("train", "validation"):
        if values.get(key):
            values[key] = str(Path(values[key]).resolve())
    return values


def refit_lexical_heads(config: TrainConfig) -> dict:
    """Refit the lexical heads of the router saved in `config.output` and score it again; the encoder is untouched.

    Changing how the n-gram heads are built then costs seconds instead of a fine-tune. The returned summary (also
    written to metrics.json) keeps the original training's time, steps and task weights.
    """
    output = Path(config.output)
    data = prepare_data(config)
    lexical = fit_lexical_heads(config, data)
    for name in (LEXICAL_CONFIG, LEXICAL_WEIGHTS):
        (output / name).unlink(missing_ok=True)
    if lexical is not None:
        lexical.save(output)
    summary = json.loads((output / "metrics.json").read_text())
    for key in ("tasks", "mean_macro_f1", "encoder_only", "lexical_only"):
        summary.pop(key, None)
    if data.eval_texts is not None:
        encoder = Router.from_pretrained(output).encoder_proba(data.eval_texts, batch_size=config.eval_batch_size)
        summary.update(evaluation_metrics(data.eval_labels, [encoder[s.name] for s in data.specs], data.specs,
                                          lexical, data.eval_texts))
    (output / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    logger.info("Refit the lexical heads of %s", output)
    return summary


def train_or_reuse(config: TrainConfig, reuse: bool = False) -> dict:
    """`train_router`, or with `reuse` and a finished training of the same config in place, its lexical refit."""
    if reuse and trained_with(config):
        logger.info("%s already holds a training with this config: reusing it", config.output)
        return {**refit_lexical_heads(config), "reused": True}
    return train_router(config)


def fit_lexical_heads(config: TrainConfig, data: PreparedData) -> LexicalHeads | None:
    if config.lexical_weight <= 0:
        return None
    settings = LexicalSettings(weight=config.lexical_weight, class_weight_balanced=config.class_weights)
    started = time.perf_counter()
    try:
        lexical = LexicalHeads.fit(data.train_texts, data.train_labels, data.specs, settings)
    except InputError as error:  # a handful of tickets with no repeated word: the encoder heads still route
        logger.warning("%s: %s; the router is saved with its encoder heads alone", config.train, error)
        return None
    logger.info("Fitted the lexical heads in %.1f s", time.perf_counter() - started)
    return lexical


def evaluation_metrics(labels: np.ndarray, encoder: list[np.ndarray], specs: list[TaskSpec],
                       lexical: LexicalHeads | None, texts: list[str] | None) -> dict:
    """Scores of the model as `Router` uses it, from the encoder heads' probabilities per task; with lexical
    heads, also each part's alone."""
    names = [s.name for s in specs]
    if lexical is None:
        return multitask_metrics(labels, encoder, names)
    lexical_proba = lexical.predict_proba(texts)
    fused = [fuse(p, lexical_proba.get(name), lexical.settings.weight) for p, name in zip(encoder, names)]
    result = multitask_metrics(labels, fused, names)
    result["encoder_only"] = multitask_metrics(labels, encoder, names)
    covered = [t for t, name in enumerate(names) if name in lexical_proba]
    result["lexical_only"] = multitask_metrics(labels[:, covered], [lexical_proba[names[t]] for t in covered],
                                               [names[t] for t in covered])
    return result


def _save_outputs(trainer, config, eval_dataset, eval_texts, data, train_metrics, train_seconds) -> dict:
    output = Path(config.output)
    trainer.save_model(str(output))
    if not trainer.is_world_process_zero():
        return {}
    lexical = fit_lexical_heads(config, data)
    if lexical is not None:
        lexical.save(output)
    (output / "training_config.json").write_text(config.to_json() + "\n")
    (output / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1) + "\n")
    summary: dict = {
        "train_runtime_s": round(train_seconds, 2),
        "train_samples_per_second": train_metrics.get("train_samples_per_second"),
        "global_steps": trainer.state.global_step,
        "task_weights": trainer.task_weights_now(),
    }
    conflict = trainer.conflict_summary(train_seconds)
    if conflict:
        summary["gradient_conflict"] = conflict
    draw_training_curves(trainer.state.log_history, output / "training_curves.png")
    if eval_dataset is not None:
        prediction = trainer.predict(eval_dataset)
        logits = prediction.predictions if isinstance(prediction.predictions, tuple) else (prediction.predictions,)
        # label_ids, not data.eval_labels: the evaluation set was reordered by length.
        encoder = [softmax(np.asarray(task_logits, dtype=np.float32)) for task_logits in logits]
        summary.update(evaluation_metrics(prediction.label_ids, encoder, data.specs, lexical, eval_texts))
        summary["best_checkpoint"] = trainer.state.best_model_checkpoint
    (output / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if not config.keep_checkpoints:
        shutil.rmtree(output / "checkpoints", ignore_errors=True)
    logger.info("Saved the router to %s", output)
    return summary
