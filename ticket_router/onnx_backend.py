"""Route with an export directory (`ticket-router export`): ONNX Runtime instead of torch, same records.

`Router.from_pretrained(EXPORT_DIR)` returns an `OnnxRouter`: the `Router` with one method replaced, the forward
pass of one batch (`_batch_logits`). Tokenisation uses the `tokenizers` library on the exported tokenizer.json
(the same Rust tokenizer the transformers "fast" tokenizers wrap), so neither torch nor transformers is imported:
routing one ticket from the command line starts in a fraction of the time. Lexical heads, fusion and the route
records are the Router's own.

onnxruntime, onnx and the web service's packages are the optional `serve` extra: `pip install "ticket_router[serve]"`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from .errors import InputError
from .export import MANIFEST_NAME, ONNX_NAME, ExportManifest
from .router import Router
from .tasks import TaskSpec

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "ticket_router[serve]"'


def require_onnx() -> None:
    """Refuse in one line when the optional ONNX packages are missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise InputError(f"{error.name} is not installed: {INSTALL_HINT}") from None


def is_export_dir(path: str | Path) -> bool:
    return (Path(path) / MANIFEST_NAME).is_file()


class ExportConfig:
    """What the Router reads from a model's config (tasks, text columns, max length), from config.json as JSON."""

    def __init__(self, data: dict):
        self.tasks = data["tasks"]
        self.text_columns = data.get("text_columns") or []
        self.max_length = int(data.get("max_length", 128))

    def task_specs(self) -> list[TaskSpec]:
        return [TaskSpec.from_dict(task) for task in self.tasks]


class OnnxModel:
    """The exported graph in an ONNX Runtime session; `logits` runs one tokenised batch."""

    def __init__(self, session, config: ExportConfig, manifest: ExportManifest):
        self.session = session
        self.config = config
        self.manifest = manifest
        self.outputs = [task["output"] for task in manifest.tasks]

    def logits(self, encoded: dict[str, np.ndarray]) -> list[np.ndarray]:
        feed = {name: encoded[name] for name in self.manifest.inputs}
        return [np.asarray(x, dtype=np.float32) for x in self.session.run(self.outputs, feed)]


def _tokenizer(directory: Path, max_length: int):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    settings = json.loads((directory / "tokenizer_config.json").read_text())
    pad_token = settings.get("pad_token") or "[PAD]"
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise InputError(f"{directory / 'tokenizer_config.json'}: pad token {pad_token!r} is not in the vocabulary")
    # As transformers calls it: padding=True (to the longest), truncation=True (longest first) at max_length.
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def physical_cores() -> int:
    """Cores ONNX Runtime should use: physical ones (a second hyper-thread per core adds little to GEMMs)."""
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def session_options(threads: int | None = None):
    """ONNX Runtime settings for routing: all graph optimisations, one sequential stream of ops on `threads`
    intra-op threads (default: the physical cores), idle threads asleep."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # An encoder is one chain of ops: parallel execution only adds inter-op threads competing for the cores.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    # Idle worker threads sleep instead of spinning: on a shared or busy CPU (a web service's event loop and
    # tokenizer, other processes) spinning steals the cores the graph needs; measured 11-12 vs 15-16 tickets/s
    # for int8 on this loaded 2-core machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def load_export(directory: str | Path, threads: int | None = None):
    """(OnnxModel, tokenizer) of an export directory, after checking every file's checksum."""
    require_onnx()
    import onnxruntime as ort

    directory = Path(directory)
    manifest = ExportManifest.load(directory)
    manifest.verify(directory)
    config = ExportConfig(json.loads((directory / "config.json").read_text()))
    session = ort.InferenceSession(str(directory / ONNX_NAME), session_options(threads),
                                   providers=["CPUExecutionProvider"])
    logger.info("Loaded export %s (%s, opset %d)", directory, manifest.quantization, manifest.opset)
    return OnnxModel(session, config, manifest), _tokenizer(directory, config.max_length)


class OnnxRouter(Router):
    """A Router whose encoder pass runs the exported graph with ONNX Runtime (CPU)."""

    @staticmethod
    def _place(model: OnnxModel, device):
        if device not in (None, "cpu"):
            logger.warning("device=%r: an ONNX export runs on the CPU here", device)
        return model, "cpu"

    def _batch_logits(self, texts: list[str]) -> list[np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts)
        encoded = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return self.model.logits(encoded)
