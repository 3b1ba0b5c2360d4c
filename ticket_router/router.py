"""`Router`: load one saved model directory and route tickets with one forward pass for every head.

Batches are formed from tickets sorted by length, so padding stays small, and results come back in input order.
A directory trained with `lexical_weight > 0` also holds lexical heads (`lexical.py`); their probabilities are
fused with the encoder heads' in `predict_proba`, and `lexical_weight = 0` on the Router switches them off.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from .errors import InputError
from .lexical import LexicalHeads, check_weight, fuse, softmax
from .tasks import TaskSpec

# torch, transformers and datasets are imported where they are used: an ONNX export (onnx_backend.py) routes
# without them, which saves seconds of start-up.
if TYPE_CHECKING:
    import datasets
    import torch

    from .modeling import MultiTaskRouterModel

logger = logging.getLogger(__name__)


class Router:
    def __init__(self, model: MultiTaskRouterModel, tokenizer, device: str | torch.device | None = None,
                 lexical: LexicalHeads | None = None):
        self.model, self.device = self._place(model, device)
        self.tokenizer = tokenizer
        self.specs: list[TaskSpec] = model.config.task_specs()
        self.lexical = lexical
        self._lexical_weight = lexical.settings.weight if lexical is not None else 0.0

    @staticmethod
    def _place(model: MultiTaskRouterModel, device: str | torch.device | None):
        """The model in eval mode on its device (CUDA when there is one), and that device."""
        import torch

        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return model.to(device).eval(), device

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None) -> "Router":
        path = Path(path)
        from .onnx_backend import is_export_dir  # --- serve: an export dir runs with ONNX Runtime, no torch

        if is_export_dir(path):
            from .onnx_backend import OnnxRouter, load_export

            (model, tokenizer), cls = load_export(path), OnnxRouter
        else:
            model, tokenizer = cls._load_torch(path)
        return cls(model, tokenizer, device, lexical=LexicalHeads.load(path))

    @staticmethod
    def _load_torch(path: Path):
        """The saved model and its tokenizer, after checking that `path` holds a router."""
        from transformers import AutoTokenizer

        from .modeling import MultiTaskRouterModel, RouterConfig

        if not (path / "config.json").is_file():
            raise InputError(f"{path}: not a ticket_router model directory (no config.json)")
        config = RouterConfig.from_pretrained(path)
        if getattr(config, "model_type", None) != RouterConfig.model_type or not config.tasks:
            raise InputError(f"{path}: config.json is not a ticket_router model (train one with `ticket-router train`)")
        return MultiTaskRouterModel.from_pretrained(path, config=config), AutoTokenizer.from_pretrained(path)

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
        from .data import join_text_columns

        return join_text_columns(table, self.text_columns, source)

    def predict_proba(
        self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False
    ) -> dict[str, np.ndarray]:
        """Per task, an (n_texts, n_labels) array of class probabilities (encoder and lexical heads fused)."""
        encoder = self.encoder_proba(texts, batch_size, show_progress)
        if self.lexical is None or self.lexical_weight <= 0:
            return encoder
        lexical = self.lexical.predict_proba(texts)
        return {name: fuse(proba, lexical.get(name), self.lexical_weight) for name, proba in encoder.items()}

    def encoder_proba(
        self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False
    ) -> dict[str, np.ndarray]:
        """Per task, an (n_texts, n_labels) array of the encoder heads' class probabilities."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        outputs = {spec.name: np.zeros((len(texts), spec.num_labels), dtype=np.float32) for spec in self.specs}
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="Routing", disable=not show_progress, unit="batch"):
            rows = order[start:start + batch_size]
            for spec, task_logits in zip(self.specs, self._batch_logits([texts[i] for i in rows])):
                outputs[spec.name][rows] = softmax(task_logits)
        return outputs

    def _batch_logits(self, texts: list[str]) -> list[np.ndarray]:
        """One batch through the encoder: per task, (len(texts), n_labels) float32 logits (ONNX: onnx_backend)."""
        import torch

        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
        names = set(self.tokenizer.model_input_names)
        with torch.inference_mode():
            logits = self.model(**{k: v.to(self.device) for k, v in encoded.items() if k in names}).logits
        return [task_logits.float().cpu().numpy() for task_logits in logits]

    def route(self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False) -> list[dict]:
        """One record per ticket: {task: {"label", "confidence", "scores": {label: probability}}}."""
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
        return records

    def evaluate(self, table: datasets.Dataset, source: str, strict: bool = False, batch_size: int = 32) -> dict:
        """{"tasks": {name: {accuracy, macro_f1, n}}, "mean_macro_f1"}; tasks whose column is absent are skipped."""
        from .data import encode_labels
        from .metrics import multitask_metrics

        present = [s for s in self.specs if s.column in table.column_names]
        for spec in self.specs:
            if spec not in present:
                logger.warning("%s: no column %r: task %r is not evaluated", source, spec.column, spec.name)
        if not present:
            columns = ", ".join(repr(s.column) for s in self.specs)
            raise InputError(f"{source}: none of the label columns {columns} is present; nothing to evaluate")
        gold = encode_labels(table, present, source, strict=strict)
        probabilities = self.predict_proba(self.texts_from_table(table, source), batch_size, show_progress=True)
        return multitask_metrics(gold, [probabilities[s.name] for s in present], [s.name for s in present])
