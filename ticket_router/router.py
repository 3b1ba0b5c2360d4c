"""`Router`: THE trained model. Save it, load it and route tickets through it; nothing else is persisted.

A model directory (`Router.save_pretrained`, which training calls) holds:

- `config.json` + `model.safetensors`: the `MultiTaskRouterModel` (encoder, one head per task, the task specs);
- the tokenizer files;
- `router.json`: `RouterSettings`, the Router's own settings (the fusion weight);
- each component's files (`COMPONENTS`): the lexical heads' `lexical.json` + `lexical.safetensors`;
- from training: `training_config.json`, `log_history.json`, `metrics.json`.

`MultiTaskRouterModel.from_pretrained` alone loads the encoder heads only and routes differently: load
`Router.from_pretrained`. Fused probabilities are computed in one place, `predict_proba`; training scores,
`evaluate`, `predict` and `shadow` all go through it. Batches are formed from tickets sorted by length, so padding
stays small, and results come back in input order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from tqdm.auto import tqdm

from .atomic import atomic_directory
from .errors import InputError, first_line
from .lexical import LexicalHeads, check_weight, fuse, softmax
from .model_dir import SETTINGS_NAME, check_complete, check_replaceable
from .calibration import Calibration  # temperatures per head (issue 13)
from .policy import RoutingPolicy, decide, log_missing_routing_files, route_outcome, routing_metrics
from .tasks import TaskSpec

# torch, transformers, datasets and the metrics are imported where they are used: an ONNX export (onnx_backend.py)
# and routing lines from stdin need none of them, which saves seconds of start-up.
if TYPE_CHECKING:
    import datasets
    import torch

    from .modeling import MultiTaskRouterModel

logger = logging.getLogger(__name__)

class Component(Protocol):
    """An optional part saved beside the encoder: `load` returns None when the directory holds none."""

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> "Component | None": ...


# Attribute name on Router -> its class. A new part (calibration, routing policy) is one line here and one
# keyword of `Router.__init__`.
COMPONENTS: dict[str, type[Component]] = {
    "lexical": LexicalHeads,
    "calibration": Calibration,
    "policy": RoutingPolicy,
}


@dataclass
class RouterSettings:
    """What the Router itself decides, saved as router.json."""

    lexical_weight: float = 0.0  # share of the lexical heads in the fused probabilities

    def save(self, directory: Path) -> None:
        (directory / SETTINGS_NAME).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path, lexical: LexicalHeads | None) -> "RouterSettings":
        path = directory / SETTINGS_NAME
        if not path.is_file():  # saved before router.json existed: the weight sat in the lexical settings
            return cls(lexical_weight=lexical.settings.weight if lexical is not None else 0.0)
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: not valid JSON ({error})") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            logger.warning("%s: ignoring unknown settings %s (saved by a newer ticket_router?)", path, unknown)
        return cls(**{k: v for k, v in values.items() if k in known})


class Router:
    def __init__(self, model: MultiTaskRouterModel, tokenizer, device: str | torch.device | None = None,
                 settings: RouterSettings | None = None, lexical: LexicalHeads | None = None,
                 calibration: Calibration | None = None, policy: RoutingPolicy | None = None):
        self.model, self.device = self._place(model, device)
        self.tokenizer = tokenizer
        self.specs: list[TaskSpec] = model.config.task_specs()
        self.lexical = lexical
        self.calibration = calibration  # temperatures applied after fusion (None: probabilities as the heads give them)
        self.policy = policy  # auto/review thresholds and label-pair consistency (None: every decision "auto")
        if settings is None:
            settings = RouterSettings(lexical_weight=lexical.settings.weight if lexical is not None else 0.0)
        self.settings = settings
        self.lexical_weight = settings.lexical_weight  # checked by the setter

    # ------------------------------------------------------------------ persistence

    @staticmethod
    def _place(model: MultiTaskRouterModel, device: str | torch.device | None):
        """The model in eval mode on its device (CUDA when there is one), and that device."""
        import torch

        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return model.to(device).eval(), device

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        threads: int | None = None) -> "Router":
        """The router saved in `path`: a PyTorch model directory, or an export run by ONNX Runtime on `threads`
        intra-op threads (default: the physical cores; a PyTorch model uses torch's process-wide setting)."""
        path = Path(path)
        from .onnx_backend import is_export_dir  # an export dir runs with ONNX Runtime, without torch

        if is_export_dir(path):
            from .onnx_backend import OnnxRouter, load_export

            (model, tokenizer), cls = load_export(path, threads), OnnxRouter
        else:
            model, tokenizer = cls._load_torch(path)
        components = {name: kind.load(path) for name, kind in COMPONENTS.items()}
        settings = RouterSettings.load(path, components["lexical"])
        log_missing_routing_files(path, components["calibration"], components["policy"])
        return cls(model, tokenizer, device, settings=settings, **components)

    @staticmethod
    def _load_torch(path: Path):
        """The saved model and its tokenizer, refusing a truncated or damaged directory in one line."""
        from safetensors import SafetensorError
        from transformers import AutoTokenizer

        from .modeling import MultiTaskRouterModel, RouterConfig

        check_complete(path)
        try:
            config = RouterConfig.from_pretrained(path)
            if getattr(config, "model_type", None) != RouterConfig.model_type or not config.tasks:
                raise InputError(f"{path}: config.json is not a ticket_router model (train one with `ticket-router train`)")
            return MultiTaskRouterModel.from_pretrained(path, config=config), AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, SafetensorError) as error:  # a damaged weights, tokenizer or JSON file
            if isinstance(error, InputError):
                raise
            raise InputError(f"{path}: damaged model directory: {first_line(error)}") from error

    def save_pretrained(self, directory: str | Path, extra_files: Mapping[str, str | bytes] | None = None,
                        keep: Sequence[str] = ()) -> Path:
        """Write the model directory atomically: into a folder beside it, then moved into place.

        A save that is killed leaves the previous directory whole. `extra_files` (name -> text, or bytes) are written with
        it; `keep` names entries of the previous directory carried over (e.g. "checkpoints").
        """
        directory = Path(directory)
        check_replaceable(directory)
        with atomic_directory(directory, keep=keep) as staging:
            self.model.save_pretrained(staging)
            self.tokenizer.save_pretrained(staging)
            self.settings.save(staging)
            for name in COMPONENTS:
                part = getattr(self, name)
                if part is not None:
                    part.save(staging)
            for name, content in (extra_files or {}).items():
                if isinstance(content, bytes):
                    (staging / name).write_bytes(content)
                else:
                    (staging / name).write_text(content, encoding="utf-8")
        logger.info("Saved the router to %s", directory)
        return directory

    # ------------------------------------------------------------------ settings and facts

    @property
    def lexical_weight(self) -> float:
        """The share of the lexical heads in the fused probabilities: as trained, or 0 for the encoder heads alone."""
        return self.settings.lexical_weight

    @lexical_weight.setter
    def lexical_weight(self, weight: float) -> None:
        weight = check_weight(weight)
        if weight > 0 and self.lexical is None:
            raise InputError(f"lexical_weight={weight!r}: this model has no lexical heads "
                             "(train it with lexical_weight > 0)")
        self.settings.lexical_weight = weight

    def set_lexical(self, lexical: LexicalHeads | None, weight: float) -> None:
        """Replace the lexical heads (e.g. refitted) and their share; `weight` is ignored without heads."""
        self.lexical = lexical
        self.lexical_weight = weight if lexical is not None else 0.0

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

        return join_text_columns(table, self.text_columns, source, warn_blank=False)  # `route` warns once

    # ------------------------------------------------------------------ routing

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False,
                      encoder_proba: Mapping[str, np.ndarray] | None = None,
                      calibrated: bool = True) -> dict[str, np.ndarray]:
        """Per task, an (n_texts, n_labels) array of the routed class probabilities: THE place they are made.

        Encoder and lexical heads fused by `lexical_weight`, then scaled by the stored temperatures unless
        `calibrated` is False. `encoder_proba` passes the encoder heads' output when the caller already has it
        (training scores each part too).
        """
        encoder = encoder_proba if encoder_proba is not None else self.encoder_proba(texts, batch_size, show_progress)
        probabilities = dict(encoder)
        if self.lexical is not None and self.lexical_weight > 0:
            lexical = self.lexical.predict_proba(texts)
            probabilities = {name: fuse(p, lexical.get(name), self.lexical_weight) for name, p in encoder.items()}
        if calibrated and self.calibration is not None:
            probabilities = self.calibration.apply(probabilities, self.lexical_weight)
        return probabilities

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

    def route(self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False,
              top_k: int = 0) -> list[dict]:
        """One record per ticket: {task: {"label", "confidence", "scores": {label: probability}, "decision"
        ("auto"/"review"), with top_k > 0 "top_k": [{"label", "probability"}...]}, "route", "review_reasons"}."""
        _warn_blank(texts)
        probabilities = self.predict_proba(texts, batch_size, show_progress)
        records = [{spec.name: _decision(spec, probabilities[spec.name][i]) for spec in self.specs}
                   for i in range(len(texts))]
        return decide(records, probabilities, list(texts), self.specs, self.policy, top_k)

    def labeled_specs(self, table: datasets.Dataset, source: str, purpose: str) -> list[TaskSpec]:
        """The tasks whose label column `table` has (evaluate, calibrate); none is refused in one line."""
        present = [s for s in self.specs if s.column in table.column_names]
        if not present:
            columns = ", ".join(repr(s.column) for s in self.specs)
            raise InputError(f"{source}: none of the label columns {columns} is present; nothing to {purpose}")
        return present

    def evaluate(self, table: datasets.Dataset, source: str, strict: bool = False, batch_size: int = 32,
                 plots: str | Path | None = None) -> dict:
        """{"tasks": {name: {accuracy, macro_f1, n, ece, aurc, and with a policy coverage, auto_precision, auto_n,
        threshold}}, "mean_macro_f1", "route": {auto_share, auto_precision, ...} (the overall decision)}; tasks
        whose column is absent are skipped. `plots`: a directory for one risk-coverage PNG per task."""
        from .data import encode_labels, join_text_columns
        from .metrics import multitask_metrics

        present = self.labeled_specs(table, source, "evaluate")
        for spec in self.specs:
            if spec not in present:
                logger.warning("%s: no column %r: task %r is not evaluated", source, spec.column, spec.name)
        gold = encode_labels(table, present, source, strict=strict)
        texts = join_text_columns(table, self.text_columns, source)
        probabilities = self.predict_proba(texts, batch_size, show_progress=True)
        result = multitask_metrics(gold, [probabilities[s.name] for s in present], [s.name for s in present])
        for name, extra in routing_metrics(gold, probabilities, present, self.policy, plots).items():
            result["tasks"][name].update(extra)
        result["route"] = route_outcome(gold, probabilities, list(texts), self.specs, present, self.policy)
        return result


def _decision(spec: TaskSpec, scores: np.ndarray) -> dict:
    best = int(scores.argmax())
    return {
        "label": spec.output_label(spec.labels[best]),
        "confidence": round(float(scores[best]), 6),
        "scores": {label: round(float(p), 6) for label, p in zip(spec.labels, scores)},
    }


def _warn_blank(texts: Sequence[str]) -> None:
    blank = [i for i, text in enumerate(texts) if not text.strip()]
    if blank:
        logger.warning("%d of %d ticket(s) are blank (first: ticket %d); they are routed on the heads' biases "
                       "alone, so their labels mean little", len(blank), len(texts), blank[0] + 1)
