"""`ticket-router export`: one ONNX graph with the encoder and every head, beside everything else the router reads.

The export directory holds `model.onnx` (inputs `input_ids`, `attention_mask` and, for BERT-style encoders,
`token_type_ids`, all (batch, sequence) int64 with both axes dynamic; one `(batch, n_labels)` logits output per
head, in task order), the tokenizer, `config.json` (tasks, label maps, text columns, max length), every small side
file of the model directory (lexical heads, calibration, routing policy, metrics...) and `export_manifest.json`:
tasks, labels, source model, opset, exporter, quantisation, versions and the sha256 of every file, checked on load.

Exporter: the TorchScript-based one (`dynamo=False`) is the default. Both produce a graph that matches PyTorch
within 1e-7 on the tiny test encoders and ~1e-6 on MiniLM, but the dynamo exporter takes ~15x longer (it traces
with torch.export and runs onnxscript's optimizer) and names the dynamic axes after its own constraints; see
BENCHMARKS.md, "Export and serving". `--exporter dynamo` picks the other one.

Attention is traced in its eager form (softmax(QK^T/sqrt(d) + mask) V), not the SDPA default: ONNX Runtime's
transformer optimizer recognises that pattern and fuses each layer into one `Attention` op (and the embeddings into
`EmbedLayerNormalization`), where the SDPA trace left a Where/IsNaN mask, a softmax and two MatMuls per layer
(21% of the int8 graph's time). The fused graph is what is saved; parity with PyTorch is unchanged (~2e-6).

int8: ONNX Runtime's dynamic quantisation (weights int8 per output channel, activations quantised on the fly), which
needs no calibration data and suits CPU inference of small BERT encoders. On the fused graph it quantises the
fused attention too (`QAttention`); the embeddings stay float.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .backbone import _sha256 as sha256  # light: hashlib only, no torch
from .errors import InputError

logger = logging.getLogger(__name__)

MANIFEST_NAME = "export_manifest.json"
ONNX_NAME = "model.onnx"
FORMAT_VERSION = 1
OPSET = 17  # TorchScript exporter; the dynamo exporter starts at 18
QUANTIZATIONS = ("none", "int8")
EXPORTERS = ("torchscript", "dynamo")
# Side files copied from the model directory: small JSON / text / safetensors files. The torch weights
# (model.safetensors, shards), pickles (training_args.bin) and folders (checkpoints/) stay behind.
_SIDE_SUFFIXES = (".json", ".txt", ".safetensors", ".model")
_TORCH_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


@dataclass
class ExportManifest:
    """`export_manifest.json`: what the bundle holds and how it was made."""

    tasks: list[dict]  # {"name", "labels", "output"}: the graph output holding the task's logits
    inputs: list[str]
    source_model: dict  # {"path", "sha256"} of the torch weights exported
    opset: int
    exporter: str
    quantization: str
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256, every file but the manifest
    versions: dict[str, str] = field(default_factory=dict)
    fused_ops: dict[str, int] = field(default_factory=dict)  # ORT transformer fusions applied (op -> count)
    format_version: int = FORMAT_VERSION

    def save(self, directory: Path) -> None:
        (directory / MANIFEST_NAME).write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "ExportManifest":
        path = directory / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as error:
            raise InputError(f"{path}: not a valid export manifest ({error})") from None

    def verify(self, directory: Path) -> None:
        """Raise an InputError naming the first file that is missing or differs from the export."""
        for name, digest in sorted(self.files.items()):
            path = directory / name
            if not path.is_file():
                raise InputError(f"{path}: missing from the export (listed in {MANIFEST_NAME})")
            if sha256(path) != digest:
                raise InputError(f"{path}: checksum mismatch: the file changed since the export; export again")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("ticket_router", "torch", "transformers", "onnx", "onnxruntime", "onnxscript"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def _graph_module(router):
    """The router's torch model as a module returning one logits tensor per head (no dict, no dropout)."""
    import torch

    class Heads(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            return tuple(self.model(input_ids=input_ids, attention_mask=attention_mask,
                                    token_type_ids=token_type_ids).logits)

    return Heads(router.model).eval()


def _export_graph(router, path: Path, exporter: str) -> tuple[list[str], int]:
    """Write the fp32 graph to `path`; return its input names and opset."""
    import torch

    inputs = ["input_ids", "attention_mask"]
    if router.model._encoder_takes_token_types:
        inputs.append("token_type_ids")
    # Two tickets of different lengths: padding and masking are traced, and no axis is specialised to 1.
    sample = router.tokenizer(["export sample ticket", "a somewhat longer sample ticket for the exporter"],
                              padding=True, return_tensors="pt", return_token_type_ids=True)
    args = tuple(sample[name] for name in inputs)
    outputs = [f"logits_{i}" for i in range(len(router.specs))]
    router.model.encoder.set_attn_implementation("eager")  # the pattern ORT fuses (module docstring)
    module = _graph_module(router)
    if exporter == "dynamo":
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, dynamo=True,
                          opset_version=OPSET + 1, external_data=False,
                          dynamic_shapes={name: {0: batch, 1: sequence} for name in inputs})
        return inputs, OPSET + 1
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs} | {name: {0: "batch"} for name in outputs}
    torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, dynamo=False,
                      opset_version=OPSET, dynamic_axes=axes)
    return inputs, OPSET


def _fuse_transformer(router, source: Path, target: Path) -> dict[str, int]:
    """ONNX Runtime's transformer fusions (attention, embeddings, skip layer norm, bias GELU) of `source` into
    `target`; returns the count of each fused op. Only the graph-level fusions (opt_level 0): the session applies
    its own CPU optimisations at load, so the saved graph stays portable."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = router.model.encoder.config
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", 0)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim", 0)
    fused = optimize_model(str(source), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
    fused.save_model_to_file(str(target))
    return {op: n for op, n in fused.get_fused_operator_statistics().items() if n}


def _quantize_int8(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel scales: on the support-ticket router, per-tensor int8 changed 7-15% of the encoder heads' top-1
    # choices and 1.9 points of urgency macro-F1; per-channel 3-7% and under 0.5 point (BENCHMARKS.md).
    # MatMul and fused Attention only: int8 word embeddings (QEmbedLayerNormalization) cost ~1 point of urgency
    # macro-F1 on the 608 validation tickets, for an op that is a table look-up anyway.
    # DefaultTensorType: shape inference cannot type the outputs of the fused (com.microsoft) ops; they are float.
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Attention"],
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _copy_side_files(model_dir: Path, output: Path) -> list[str]:
    copied = []
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and path.suffix in _SIDE_SUFFIXES and path.name not in _TORCH_WEIGHTS \
                and not path.name.startswith("model-") and path.name != MANIFEST_NAME:
            shutil.copy2(path, output / path.name)
            copied.append(path.name)
    return copied


def export_router(model_dir: str | Path, output: str | Path, quantize: str = "none",
                  exporter: str = "torchscript") -> ExportManifest:
    """Export the router in `model_dir` to `output` (created; must be empty or absent). Returns the manifest."""
    from .onnx_backend import is_export_dir
    from .router import Router

    model_dir, output = Path(model_dir), Path(output)
    if quantize not in QUANTIZATIONS or exporter not in EXPORTERS:
        raise InputError(f"quantize={quantize!r}, exporter={exporter!r}: expected one of {QUANTIZATIONS}, {EXPORTERS}")
    if is_export_dir(model_dir):
        raise InputError(f"{model_dir}: already an export; export the PyTorch model directory it came from")
    if output.exists() and any(output.iterdir()):
        raise InputError(f"--output {output}: not empty; choose a new directory")
    router = Router.from_pretrained(model_dir, device="cpu")  # refuses a directory that is not a router
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output) as scratch:
        traced, fp32 = Path(scratch) / "traced.onnx", Path(scratch) / ONNX_NAME
        inputs, opset = _export_graph(router, traced, exporter)
        fused = _fuse_transformer(router, traced, fp32)
        if quantize == "int8":
            _quantize_int8(fp32, output / ONNX_NAME)
        else:
            shutil.move(fp32, output / ONNX_NAME)
    router.tokenizer.save_pretrained(output)
    _copy_side_files(model_dir, output)
    manifest = ExportManifest(
        tasks=[{"name": s.name, "labels": list(s.labels), "output": f"logits_{i}"} for i, s in enumerate(router.specs)],
        inputs=inputs, source_model={"path": str(model_dir.resolve()), "sha256": sha256(model_dir / "model.safetensors")},
        opset=opset, exporter=exporter, quantization=quantize, versions=_versions(), fused_ops=fused,
    )
    manifest.files = {p.name: sha256(p) for p in sorted(output.iterdir()) if p.is_file() and p.name != MANIFEST_NAME}
    manifest.save(output)
    logger.info("Exported %s to %s (%s, %s, opset %d)", model_dir, output, exporter, quantize, opset)
    return manifest


def cmd_export(args: argparse.Namespace) -> int:
    from .onnx_backend import require_onnx

    require_onnx()
    manifest = export_router(args.model, args.output, quantize=args.quantize, exporter=args.exporter)
    print(json.dumps({"output": args.output, "quantization": manifest.quantization, "opset": manifest.opset,
                      "exporter": manifest.exporter, "fused_ops": manifest.fused_ops,
                      "tasks": [t["name"] for t in manifest.tasks],
                      "bytes": (Path(args.output) / ONNX_NAME).stat().st_size}, indent=2))
    return 0


def add_export_command(commands) -> None:
    """`ticket-router export`: parser and handler (cli.py only calls this)."""
    export = commands.add_parser("export", help="Export a trained router to one ONNX bundle (optionally int8).")
    export.add_argument("--model", required=True, help="Trained model directory (PyTorch).")
    export.add_argument("--output", required=True, help="New directory for the bundle.")
    export.add_argument("--quantize", choices=QUANTIZATIONS, default="none",
                        help="int8: ONNX Runtime dynamic quantisation of the weights. Default: none (fp32).")
    export.add_argument("--exporter", choices=EXPORTERS, default="torchscript",
                        help="torch.onnx exporter. Default: torchscript (dynamo=False): faster, as exact.")
    export.set_defaults(func=cmd_export)
