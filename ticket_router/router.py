"""`Router`: load one saved model directory and route tickets with one forward pass for every head.

Batches are formed from tickets sorted by length, so padding stays small, and results come back in input order.
A directory trained with `lexical_weight > 0` also holds lexical heads (`lexical.py`); their probabilities are
fused with the encoder heads' in `predict_proba`, and `lexical_weight = 0` on the Router switches them off.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from .data import encode_labels, join_text_columns
from .errors import InputError
from .lexical import LexicalHeads, check_weight, fuse
from .metrics import multitask_metrics
from .modeling import MultiTaskRouterModel, RouterConfig
# Calibration and the auto/review policy (issue 13): calibration.py, policy.py, calibrate.py.
from .calibration import Calibration
from .policy import RoutingPolicy, decide, load_routing_files, routing_metrics
from .tasks import TaskSpec

logger = logging.getLogger(__name__)


class Router:
    def __init__(self, model: MultiTaskRouterModel, tokenizer, device: str | torch.device | None = None,
                 lexical: LexicalHeads | None = None, calibration: Calibration | None = None,
                 policy: RoutingPolicy | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.specs: list[TaskSpec] = model.config.task_specs()
        self.lexical = lexical
        self._lexical_weight = lexical.settings.weight if lexical is not None else 0.0
        self.calibration = calibration  # temperatures applied after fusion (None: probabilities as the heads give them)
        self.policy = policy  # auto/review thresholds and label-pair consistency (None: every decision "auto")

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None) -> "Router":
        path = Path(path)
        if not (path / "config.json").is_file():
            raise InputError(f"{path}: not a ticket_router model directory (no config.json)")
        config = RouterConfig.from_pretrained(path)
        if getattr(config, "model_type", None) != RouterConfig.model_type or not config.tasks:
            raise InputError(f"{path}: config.json is not a ticket_router model (train one with `ticket-router train`)")
        model = MultiTaskRouterModel.from_pretrained(path, config=config)
        tokenizer = AutoTokenizer.from_pretrained(path)
        calibration, policy = load_routing_files(path)
        return cls(model, tokenizer, device, lexical=LexicalHeads.load(path), calibration=calibration, policy=policy)

    @property
    def lexical_weight(self) -> float:
        """The share of the lexical heads in the fused probabilities: as trained, or 0 for the encoder heads alone."""
        return self._lexical_weight

    @lexical_weight.setter
    def lexical_weight(self, weight: float) -> None:
        weight = check_weight(weight)
        if weight > 0 and self.lexical is None:
            raise InputError(f"lexical_weight={weight!r}: this model has no lexical heads "
                             "(train it with lexical_weight > 0)")
        self._lexical_weight = weight

    @property
    def task_names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    @property
    def labels(self) -> dict[str, list[str]]:
        return {spec.name: list(spec.labels) for spec in self.specs}

    @property
    def task_columns(self) -> dict[str, str]:
        return {spec.name: spec.column for spec in self.specs}

    @property
    def text_columns(self) -> list[str]:
        return list(self.model.config.text_columns or [])

    @property
    def max_length(self) -> int:
        return int(self.model.config.max_length)

    def texts_from_table(self, table: datasets.Dataset, source: str) -> list[str]:
        return join_text_columns(table, self.text_columns, source)

    def predict_proba(
        self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False, calibrated: bool = True
    ) -> dict[str, np.ndarray]:
        """Per task, an (n_texts, n_labels) array of class probabilities (encoder and lexical heads fused, then
        scaled by the stored temperatures unless `calibrated` is False)."""
        probabilities = self.encoder_proba(texts, batch_size, show_progress)
        if self.lexical is not None and self.lexical_weight > 0:
            lexical = self.lexical.predict_proba(texts)
            probabilities = {name: fuse(p, lexical.get(name), self.lexical_weight) for name, p in probabilities.items()}
        if calibrated and self.calibration is not None:
            probabilities = self.calibration.apply(probabilities, self.lexical_weight)
        return probabilities

    @torch.inference_mode()
    def encoder_proba(
        self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False
    ) -> dict[str, np.ndarray]:
        """Per task, an (n_texts, n_labels) array of the encoder heads' class probabilities."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        outputs = {spec.name: np.zeros((len(texts), spec.num_labels), dtype=np.float32) for spec in self.specs}
        names = set(self.tokenizer.model_input_names)
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="Routing", disable=not show_progress, unit="batch"):
            rows = order[start:start + batch_size]
            encoded = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in encoded.items() if k in names}
            logits = self.model(**inputs).logits
            for spec, task_logits in zip(self.specs, logits):
                outputs[spec.name][rows] = torch.softmax(task_logits.float(), dim=-1).cpu().numpy()
        return outputs

    def route(self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False,
              top_k: int = 0) -> list[dict]:
        """One record per ticket: {task: {"label", "confidence", "scores": {label: probability}, "decision"
        ("auto"/"review"), with top_k > 0 "top_k": [{"label", "probability"}...]}, "route", "review_reasons"}."""
        probabilities = self.predict_proba(texts, batch_size, show_progress)
        records = []
        for i in range(len(texts)):
            record = {}
            for spec in self.specs:
                scores = probabilities[spec.name][i]
                best = int(scores.argmax())
                record[spec.name] = {
                    "label": spec.output_label(spec.labels[best]),
                    "confidence": round(float(scores[best]), 6),
                    "scores": {label: round(float(p), 6) for label, p in zip(spec.labels, scores)},
                }
            records.append(record)
        return decide(records, probabilities, list(texts), self.specs, self.policy, top_k)

    def evaluate(self, table: datasets.Dataset, source: str, strict: bool = False, batch_size: int = 32,
                 plots: str | Path | None = None) -> dict:
        """{"tasks": {name: {accuracy, macro_f1, n, ece, aurc, and with a policy coverage, auto_precision, auto_n,
        threshold}}, "mean_macro_f1"}; tasks whose column is absent are skipped. `plots`: a directory for one
        risk-coverage PNG per task."""
        present = [s for s in self.specs if s.column in table.column_names]
        for spec in self.specs:
            if spec not in present:
                logger.warning("%s: no column %r: task %r is not evaluated", source, spec.column, spec.name)
        if not present:
            columns = ", ".join(repr(s.column) for s in self.specs)
            raise InputError(f"{source}: none of the label columns {columns} is present; nothing to evaluate")
        gold = encode_labels(table, present, source, strict=strict)
        probabilities = self.predict_proba(self.texts_from_table(table, source), batch_size, show_progress=True)
        result = multitask_metrics(gold, [probabilities[s.name] for s in present], [s.name for s in present])
        for name, extra in routing_metrics(gold, probabilities, present, self.policy, plots).items():
            result["tasks"][name].update(extra)
        return result
