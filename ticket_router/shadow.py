"""Shadow comparison: the multi-task router against one single-task baseline per task.

``run_shadow`` loads both setups, runs them on the same tickets, measures what the shared encoder saves in
latency and memory, and writes ``report.json``, ``report.md`` and PNG plots into a report directory. The
statistics are computed by ``ticket_router.shadow_compare`` (pure), the markdown and plots drawn by
``ticket_router.shadow_report``; this module only loads, runs, times and writes.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from ticket_router.data import canonical_label, join_text_columns, read_table
from ticket_router.errors import InputError
from ticket_router.serialization import json_safe
from ticket_router.shadow_compare import (  # noqa: F401 - verdict names re-exported for callers of this module
    ECE_BINS,
    VERDICT_BETTER,
    VERDICT_NO_GOLD,
    VERDICT_SAME,
    VERDICT_WORSE,
    Predictions,
    compare_task,
    verdict,
)
from ticket_router.shadow_report import render_markdown, write_plots  # noqa: F401 - render_markdown re-exported

logger = logging.getLogger(__name__)

LATENCY_MAX_TEXTS = 256  # keeps the timing pass bounded on big files


class RouterLike(Protocol):
    """What the comparison needs from ``ticket_router.router.Router``."""

    task_names: list[str]
    labels: dict[str, list[str]]
    task_columns: dict[str, str]
    text_columns: list[str]
    model: torch.nn.Module
    device: torch.device

    def predict_proba(
        self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False
    ) -> dict[str, np.ndarray]: ...


LoadRouter = Callable[[Path, "str | None"], RouterLike]


def _default_load_router(path: Path, device: str | None) -> RouterLike:
    # Imported lazily: the real Router pulls in transformers, which tests with fakes never need.
    from ticket_router.onnx_backend import is_export_dir
    from ticket_router.router import Router

    if is_export_dir(path):  # the cost section weighs torch parameters and times torch devices
        raise InputError(f"{path}: an ONNX export; shadow compares PyTorch model directories (export the winner after)")
    return Router.from_pretrained(path, device=device)


# --------------------------------------------------------------------------- loading


def _subdirs(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _load_baselines(
    baselines_dir: Path, task_names: Sequence[str], load_router: LoadRouter, device: str | None
) -> tuple[dict[str, RouterLike], dict[str, str]]:
    """Load ``baselines_dir/<task>/`` per task; tasks found on only one side are skipped, not fatal."""
    if not baselines_dir.is_dir():
        raise InputError(f"baselines directory not found: {baselines_dir}")
    present = _subdirs(baselines_dir)
    baselines: dict[str, RouterLike] = {}
    skipped: dict[str, str] = {}
    for task in task_names:
        task_dir = baselines_dir / task
        if not task_dir.is_dir():
            skipped[task] = f"no baseline directory {task_dir} (present: {', '.join(present) or 'none'})"
            logger.warning("skipping task %r: %s", task, skipped[task])
            continue
        router = load_router(task_dir, device)
        if task not in router.task_names:
            raise InputError(
                f"baseline {task_dir} is a model for task(s) {', '.join(router.task_names)}, not {task!r}"
            )
        baselines[task] = router
    for name in present:
        if name not in task_names:
            skipped[name] = f"baseline {baselines_dir / name} has no matching head in the multi-task model"
            logger.warning("skipping %r: %s", name, skipped[name])
    if not baselines:
        missing = ", ".join(str(baselines_dir / t) for t in task_names)
        raise InputError(
            f"no baseline found for any task; expected {missing} (present: {', '.join(present) or 'none'})"
        )
    return baselines, skipped


def _gold_labels(table: Any, column: str) -> list[str | None] | None:
    """Canonical gold labels of ``column``, or None when the file has no such column."""
    if column not in table.column_names:
        return None
    return [canonical_label(v) for v in table[column]]


# --------------------------------------------------------------------------- cost


def _model_bytes(model: torch.nn.Module) -> int:
    """Bytes held by parameters and buffers: what each setup must keep resident."""
    tensors = list(model.parameters()) + list(model.buffers())
    return int(sum(t.numel() * t.element_size() for t in tensors))


def _time_setup(run: Callable[[], Any], repeats: int, device: torch.device) -> tuple[float, int | None]:
    """Median seconds of ``repeats`` calls after one warm-up, and the CUDA peak bytes (None on CPU)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)  # so each setup's peak is its own
    run()  # warm-up: the first call pays for lazy init, allocator growth, kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    peak = int(torch.cuda.max_memory_allocated(device)) if cuda else None
    return statistics.median(times), peak


def _measure_cost(
    multi: RouterLike, baselines: dict[str, RouterLike], texts: Sequence[str], batch_size: int, repeats: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    sample = list(texts[:LATENCY_MAX_TEXTS])
    first_single = next(iter(baselines.values()))
    multi_s, multi_peak = _time_setup(
        lambda: multi.predict_proba(sample, batch_size=batch_size), repeats, multi.device
    )
    single_s, single_peak = _time_setup(
        lambda: [b.predict_proba(sample, batch_size=batch_size) for b in baselines.values()],
        repeats,
        first_single.device,
    )
    latency = {
        "multitask_ms_per_ticket": 1000.0 * multi_s / len(sample),
        "single_task_ms_per_ticket": 1000.0 * single_s / len(sample),
        "speedup": single_s / multi_s if multi_s > 0 else None,
        "n_tickets_timed": len(sample),
        "repeats": repeats,
        "batch_size": batch_size,
    }
    memory = {
        "multitask": {"param_bytes": _model_bytes(multi.model), "cuda_peak_allocated_bytes": multi_peak},
        "single_task": {
            "param_bytes": sum(_model_bytes(b.model) for b in baselines.values()),
            "cuda_peak_allocated_bytes": single_peak,
        },
        # All models stay loaded during timing, so CUDA peaks include every resident model's weights.
        "note": "param_bytes = parameters + buffers; CUDA peaks are measured with all models loaded",
    }
    return latency, memory


# --------------------------------------------------------------------------- entry point


def _training_conflict(model_dir: Path) -> dict[str, Any] | None:
    """metrics.json's `gradient_conflict` of the multi-task model, if it was trained with the conflict log."""
    path = model_dir / "metrics.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("gradient_conflict") if path.is_file() else None
    except json.JSONDecodeError:
        logger.warning("%s: not valid JSON; the report has no gradient-conflict summary", path)
        return None


def run_shadow(
    model_dir: str | Path,
    baselines_dir: str | Path,
    data_path: str | Path,
    report_dir: str | Path,
    *,
    batch_size: int = 32,
    latency_repeats: int = 5,
    n_bootstrap: int = 1000,
    seed: int = 0,
    max_examples: int = 5,
    device: str | None = None,
    load_router: LoadRouter | None = None,
) -> dict[str, Any]:
    """Compare the multi-task router in ``model_dir`` with ``baselines_dir/<task>/`` models on ``data_path``.

    Writes ``report.json``, ``report.md`` and PNG plots into ``report_dir`` and
    returns the report dictionary. ``load_router(path, device)`` defaults to
    ``Router.from_pretrained``; tests inject fakes through it.
    """
    if batch_size < 1 or latency_repeats < 1 or n_bootstrap < 1:
        raise ValueError("batch_size, latency_repeats and n_bootstrap must all be >= 1")
    load = load_router or _default_load_router
    model_dir, baselines_dir, report_dir = Path(model_dir), Path(baselines_dir), Path(report_dir)

    multi = load(model_dir, device)
    baselines, skipped = _load_baselines(baselines_dir, multi.task_names, load, device)
    table = read_table(data_path)
    texts = join_text_columns(table, multi.text_columns, str(data_path))
    if len(texts) == 0:
        raise InputError(f"{data_path}: no rows to compare on")
    report_dir.mkdir(parents=True, exist_ok=True)
    logger.info("comparing %d task(s) on %d tickets", len(baselines), len(texts))

    multi_proba = multi.predict_proba(texts, batch_size=batch_size)
    tasks: dict[str, Any] = {}
    for task, baseline in baselines.items():
        column = multi.task_columns[task]
        if baseline.task_columns.get(task, column) != column:
            logger.warning("task %r: baseline reads gold from %r, using the multi-task model's %r",
                           task, baseline.task_columns[task], column)
        m = Predictions.from_proba(multi_proba[task], multi.labels[task], task, len(texts))
        single_proba = baseline.predict_proba(texts, batch_size=batch_size)
        s = Predictions.from_proba(single_proba[task], baseline.labels[task], task, len(texts))
        compared = compare_task(texts, _gold_labels(table, column), m, s,
                                n_bootstrap=n_bootstrap, seed=seed, max_examples=max_examples)
        if compared.labeled is not None:
            compared.entry["plots"] = write_plots(task, compared.labeled, report_dir)
        tasks[task] = {"gold_column": column, **compared.entry}
        logger.info("task %r: %s", task, tasks[task]["verdict"])

    latency, memory = _measure_cost(multi, baselines, texts, batch_size, latency_repeats)
    report = json_safe({
        "model_dir": str(model_dir),
        "baselines_dir": str(baselines_dir),
        "data_path": str(data_path),
        "n_tickets": len(texts),
        "device": str(multi.device),
        "tasks": tasks,
        "skipped_tasks": skipped,
        "latency": latency,
        "memory": memory,
        # How the shared encoder's task gradients related during training: the likely cause of a "worse" head.
        "gradient_conflict": _training_conflict(model_dir),
        "settings": {"batch_size": batch_size, "latency_repeats": latency_repeats,
                     "n_bootstrap": n_bootstrap, "seed": seed, "ece_bins": ECE_BINS},
    })
    # allow_nan=False: fail loudly here rather than write a file other tools cannot parse.
    (report_dir / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    (report_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
    logger.info("report written to %s", report_dir)
    return report
