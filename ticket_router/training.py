"""The `train` job: read data, build task specs, fine-tune with `MultiTaskTrainer`, save one `Router`.

The trained encoder and heads, the lexical heads (with `lexical_weight > 0`) and the fusion weight become one
`Router`, which scores the validation file and is saved by `Router.save_pretrained` (atomically) with
`training_config.json`, `log_history.json` and `metrics.json`: the scores of the saved model as `Router` routes,
plus, when lexical heads are fused, those of the encoder heads and the lexical heads alone.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, set_seed

from .backbone import load_backbone
from .calibrate import POLICY_KEYS, fit_after_training
from .config import TRAINER_KEYS, TrainConfig
from .data import build_task_specs, encode_labels, join_text_columns, label_counts, read_table, tokenize_dataset
from .errors import InputError
from .lexical import LexicalHeads, LexicalSettings
from .losses import inverse_frequency_weights
from .metrics import multitask_metrics
from .model_dir import check_replaceable
from .modeling import MultiTaskRouterModel
from .multitask_f1 import multitask_compute_metrics
from .router import Router
from .settings import KNOBS
from .tasks import TaskSpec, parse_task_mapping
from .trainer import MultiTaskTrainer
from .training_curves import draw_training_curves
from .training_args import RouterTrainingArguments

logger = logging.getLogger(__name__)

# issue 12's settings, passed through unchanged from TrainConfig to RouterTrainingArguments
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
    table = read_table(config.train, encoding=config.encoding)
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
        eval_table = read_table(config.validation, encoding=config.encoding)
        data.eval_texts = join_text_columns(eval_table, config.text_columns, config.validation)
        data.eval_labels = encode_labels(eval_table, specs, config.validation, strict=config.strict)
    return data


def training_arguments(config: TrainConfig, has_eval: bool) -> RouterTrainingArguments:
    """The Trainer's arguments, derived from the config: the knobs by name, the renamed keys by `TRAINER_KEYS`,
    and what follows from having a validation file (evaluation, checkpoint selection)."""
    strategy = ("steps" if config.eval_steps else "epoch") if has_eval else "no"
    return RouterTrainingArguments(
        **{knob: getattr(config, knob) for knob in KNOBS},
        **{key: getattr(config, name) for name, key in TRAINER_KEYS.items()},
        output_dir=str(Path(config.output) / "checkpoints"),
        eval_strategy=strategy,
        save_steps=config.eval_steps or 500,
        save_strategy=strategy if has_eval else "epoch",
        save_total_limit=1,
        load_best_model_at_end=has_eval,
        metric_for_best_model="mean_macro_f1" if has_eval else None,
        greater_is_better=True,
        report_to="none",
    )


def train_router(config: TrainConfig) -> dict:
    """Train, save and (with validation data) evaluate a router; returns the summary written to metrics.json."""
    config.validate()
    check_replaceable(Path(config.output))  # before the fine-tune, not after it
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
    eval_dataset = None
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
        compute_metrics=multitask_compute_metrics([s.name for s in data.specs]) if eval_dataset is not None else None,
        class_weights=class_weights, callbacks=callbacks,
    )
    started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=True if config.resume else None)
    if not trainer.is_world_process_zero():
        return {}
    finished = FinishedTraining(config, data, trainer, time.perf_counter() - started, train_output.metrics)
    return finished.save()


@dataclass
class FinishedTraining:
    """A fine-tune that has ended: what its saved Router and metrics.json are made of."""

    config: TrainConfig
    data: PreparedData
    trainer: MultiTaskTrainer
    train_seconds: float
    train_metrics: dict[str, float]

    def router(self) -> Router:
        """The trained encoder and heads (the best checkpoint's with validation data) and fresh lexical heads."""
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        router = Router(model, self.trainer.processing_class, device=self.trainer.args.device)
        router.set_lexical(fit_lexical_heads(self.config, self.data), self.config.lexical_weight)
        return router

    def summary(self, router: Router) -> dict:
        state = self.trainer.state
        summary: dict = {
            "train_runtime_s": round(self.train_seconds, 2),
            "train_samples_per_second": self.train_metrics.get("train_samples_per_second"),
            "global_steps": state.global_step,
            "task_weights": self.trainer.task_weights_now(),
        }
        conflict = self.trainer.conflict_summary(self.train_seconds)
        if conflict:
            summary["gradient_conflict"] = conflict
        if self.data.eval_texts is not None:
            summary.update(validation_summary(router, self.config, self.data))
            summary["best_checkpoint"] = state.best_model_checkpoint
        return summary

    def save(self) -> dict:
        router = self.router()
        summary = self.summary(router)
        files = {"training_config.json": self.config.to_json() + "\n",
                 "log_history.json": json.dumps(self.trainer.state.log_history, indent=1) + "\n",
                 "metrics.json": _summary_json(summary)}
        curves = io.BytesIO()  # per-task losses, weights, gradient norms and cosines over the steps
        if draw_training_curves(self.trainer.state.log_history, curves):
            files["training_curves.png"] = curves.getvalue()
        router.save_pretrained(self.config.output, extra_files=files,
                               keep=("checkpoints",) if self.config.keep_checkpoints else ())
        return summary


def _summary_json(summary: dict) -> str:
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"


def trained_with(config: TrainConfig) -> bool:
    """Whether `config.output` holds a finished, scored training with this very config (its output aside)."""
    output = Path(config.output)
    files = [output / name for name in ("training_config.json", "model.safetensors", "metrics.json")]
    if not all(f.is_file() for f in files):
        return False
    return training_key(json.loads(files[0].read_text())) == training_key(json.loads(config.to_json()))


def _comparable(values: dict) -> dict:
    """A saved config without its output, data paths resolved (a relative and an absolute path to one file agree).

    Keys added since it was saved take their defaults, which is how that training ran. The routing-policy keys are
    left out: a reused training refits its calibration with the current ones."""
    values = {key: value for key, value in {**asdict(TrainConfig()), **values}.items()
              if key != "output" and key not in POLICY_KEYS}
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
    router = Router.from_pretrained(output)
    router.set_lexical(fit_lexical_heads(config, data), config.lexical_weight)
    summary = json.loads((output / "metrics.json").read_text())
    for key in ("tasks", "mean_macro_f1", "encoder_only", "lexical_only", "calibration", "policy", "route"):
        summary.pop(key, None)
    if data.eval_texts is not None:
        summary.update(validation_summary(router, config, data))
    # The previous weights file is moved into the new directory as it is: the encoder is untouched, to the byte.
    router.save_pretrained(output, extra_files={"metrics.json": _summary_json(summary)},
                           keep=("checkpoints", "training_config.json", "log_history.json", "model.safetensors"))
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


def validation_summary(router: Router, config: TrainConfig, data: PreparedData) -> dict:
    """metrics.json's scores on the validation rows, then the temperatures and auto/review thresholds fitted on
    them (set on `router`, saved with it as calibration.json and policy.json)."""
    encoder = router.encoder_proba(data.eval_texts, config.eval_batch_size)
    summary = evaluation_metrics(router, data.eval_texts, data.eval_labels, data.specs, encoder_proba=encoder)
    summary.update(fit_after_training(router, config, data.specs, data.train_labels, data.eval_labels,
                                      data.eval_texts, encoder))
    return summary


def evaluation_metrics(router: Router, texts: list[str], labels: np.ndarray, specs: list[TaskSpec],
                       batch_size: int = 64, encoder_proba: dict[str, np.ndarray] | None = None) -> dict:
    """Scores of `router` as it routes (`Router.predict_proba`); with lexical heads fused, also each part's alone.

    `labels` has one column per spec of `specs`, in their order (a reloaded config may list the tasks in another).
    `encoder_proba`: the encoder heads' probabilities on `texts`, where the caller has them already.
    """
    names = [spec.name for spec in specs]
    encoder = encoder_proba if encoder_proba is not None else router.encoder_proba(texts, batch_size)
    fused = router.predict_proba(texts, batch_size, encoder_proba=encoder)
    result = multitask_metrics(labels, [fused[name] for name in names], names)
    if router.lexical is None or router.lexical_weight <= 0:
        return result
    result["encoder_only"] = multitask_metrics(labels, [encoder[name] for name in names], names)
    lexical = router.lexical.predict_proba(texts)
    covered = [t for t, name in enumerate(names) if name in lexical]
    result["lexical_only"] = multitask_metrics(labels[:, covered], [lexical[names[t]] for t in covered],
                                               [names[t] for t in covered])
    return result


# Keys that change where or how a training is saved and logged, not the model it trains.
_INERT_KEYS = ("output", "keep_checkpoints", "resume", "logging_steps")


def training_key(values: dict) -> str:
    """What determines a training's result, from a config's fields (`asdict(config)` or a training_config.json).

    Two configs with the same key train the same model (same seed, data, budget, objective): `trained_with` reuses
    a finished training on it, and the benchmarks train such a copy once. Data paths are resolved (a relative and
    an absolute path to one file agree) and equivalent settings normalised.
    """
    values = _comparable({key: value for key, value in values.items() if key not in _INERT_KEYS})
    if (values.get("max_steps") or -1) > 0:
        values["epochs"] = None  # max_steps wins over epochs in the Trainer
    weights = values.get("task_weights") or {}
    tasks = values.get("tasks") or {}
    if values.get("loss_weighting") == "fixed" and all(float(weights.get(task, 1.0)) == 1.0 for task in tasks):
        values["loss_weighting"] = "equal"  # sum_t 1.0 * L_t is exactly the equal objective (losses.py)
    if values.get("loss_weighting") != "fixed":
        values["task_weights"] = {}  # only read by fixed weighting
    if values.get("loss_weighting") != "uncertainty":
        values["uncertainty_warmup_steps"] = 0
    return json.dumps(values, sort_keys=True, default=str)
