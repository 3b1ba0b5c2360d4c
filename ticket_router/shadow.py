"""Shadow comparison: the multi-task router against one single-task baseline per task.

``run_shadow`` scores both setups on the same tickets, measures what the
shared encoder saves in latency and memory, and writes ``report.json``,
``report.md`` and PNG plots into a report directory.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from ticket_router import plots, stats
from ticket_router.data import canonical_label, join_text_columns, read_table
from ticket_router.errors import InputError
from ticket_router.serialization import json_safe

logger = logging.getLogger(__name__)

VERDICT_BETTER = "better"
VERDICT_WORSE = "worse"
VERDICT_SAME = "same within noise"
VERDICT_NO_GOLD = "no gold labels"

NEGATIVE_TRANSFER_BELOW = -0.05  # transfer ratio under which the shared model is flagged
ECE_BINS = 15
LATENCY_MAX_TEXTS = 256  # keeps the timing pass bounded on big files
EXAMPLE_TEXT_CHARS = 200
METRIC_NAMES = ("accuracy", "macro_f1", "weighted_f1", "ece")


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
    from ticket_router.router import Router

    return Router.from_pretrained(path, device=device)


@dataclass
class _Predictions:
    labels: np.ndarray  # predicted label strings, one per ticket
    confidence: np.ndarray  # top-class probability, one per ticket
    classes: list[str]  # every label the model knows, in head order (confusion-matrix axes)

    def subset(self, rows: np.ndarray) -> "_Predictions":
        return _Predictions(self.labels[rows], self.confidence[rows], self.classes)


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


def _to_predictions(proba_by_task: dict[str, np.ndarray], labels: Sequence[str], task: str, n: int) -> _Predictions:
    proba = np.asarray(proba_by_task[task], dtype=float)
    if proba.shape != (n, len(labels)):
        raise ValueError(f"task {task!r}: expected probabilities of shape {(n, len(labels))}, got {proba.shape}")
    top = proba.argmax(axis=1)
    return _Predictions(np.asarray(labels, dtype=object)[top].astype(str), proba.max(axis=1), list(labels))


# --------------------------------------------------------------------------- per-task comparison


def _null_metrics() -> dict[str, None]:
    return {name: None for name in METRIC_NAMES}


def _score(gold: np.ndarray, pred: _Predictions) -> dict[str, float]:
    correct = pred.labels == gold
    return {
        "accuracy": float(correct.mean()),
        "macro_f1": stats.macro_f1(gold, pred.labels),
        "weighted_f1": stats.weighted_f1(gold, pred.labels),
        "ece": stats.expected_calibration_error(pred.confidence, correct, ECE_BINS),
    }


def verdict(ci: tuple[float, float] | None) -> str:
    """better / worse when the 95% CI of (a - b) excludes 0, else same within noise; no gold labels without a CI."""
    if ci is None:
        return VERDICT_NO_GOLD
    if ci[0] > 0:
        return VERDICT_BETTER
    if ci[1] < 0:
        return VERDICT_WORSE
    return VERDICT_SAME


def _disagreement_counts(gold: np.ndarray | None, multi: _Predictions, single: _Predictions) -> dict[str, int]:
    differ = multi.labels != single.labels
    counts = {"n": int(differ.sum()), "n_with_gold": 0, "multitask_right": 0, "single_task_right": 0, "both_wrong": 0}
    if gold is not None:
        labeled = differ & (gold != None)  # noqa: E711 - elementwise on an object array
        counts["n_with_gold"] = int(labeled.sum())
        counts["multitask_right"] = int((labeled & (multi.labels == gold)).sum())
        counts["single_task_right"] = int((labeled & (single.labels == gold)).sum())
        counts["both_wrong"] = counts["n_with_gold"] - counts["multitask_right"] - counts["single_task_right"]
    return counts


def _truncate(text: str, limit: int = EXAMPLE_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _examples(
    texts: Sequence[str], gold: np.ndarray | None, multi: _Predictions, single: _Predictions, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` disagreeing tickets, labeled ones first (they show who was right).

    ``row`` is the 1-based data row (header not counted) so users can find the ticket in their file.
    """
    rows = np.flatnonzero(multi.labels != single.labels)
    if gold is not None:
        rows = sorted(rows, key=lambda i: gold[i] is None)  # stable: file order within each group
    return [
        {
            "row": int(i) + 1,  # 1-based data row, as in the data module's messages
            "text": _truncate(texts[i]),
            "multitask": {"label": str(multi.labels[i]), "confidence": float(multi.confidence[i])},
            "single_task": {"label": str(single.labels[i]), "confidence": float(single.confidence[i])},
            "gold": None if gold is None else gold[i],
        }
        for i in list(rows)[:limit]
    ]


def _safe_name(task: str) -> str:
    # Task names end up in file names and markdown links.
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in task)


def _write_plots(
    task: str, gold: np.ndarray, multi: _Predictions, single: _Predictions, report_dir: Path
) -> dict[str, str]:
    name = _safe_name(task)
    files = {
        "confusion_multitask": f"confusion_{name}_multitask.png",
        "confusion_single_task": f"confusion_{name}_single_task.png",
        "reliability": f"reliability_{name}.png",
    }
    for side, pred, title in (("multitask", multi, "multi-task"), ("single_task", single, "single-task")):
        path = report_dir / files[f"confusion_{side}"]
        plots.plot_confusion_matrix(gold, pred.labels, pred.classes, f"{task}: {title}", path)
    plots.plot_reliability(
        stats.reliability_bins(multi.confidence, multi.labels == gold, ECE_BINS),
        stats.reliability_bins(single.confidence, single.labels == gold, ECE_BINS),
        f"{task}: reliability",
        report_dir / files["reliability"],
    )
    return files


def _compare_task(
    task: str, texts: Sequence[str], gold_all: list[str | None] | None, multi: _Predictions, single: _Predictions,
    report_dir: Path, *, n_bootstrap: int, seed: int, max_examples: int,
) -> dict[str, Any]:
    """The per-task report entry; metrics, CI and plots only when some rows have a gold label."""
    gold = None if gold_all is None else np.asarray(gold_all, dtype=object)
    labeled = np.zeros(len(texts), dtype=bool) if gold is None else gold != None  # noqa: E711
    entry: dict[str, Any] = {
        "n_labeled": int(labeled.sum()),
        "multitask": _null_metrics(),
        "single_task": _null_metrics(),
        "transfer_ratio": None,
        "macro_f1_diff": None,
        "macro_f1_diff_ci95": None,
        "mcnemar_p": None,
        "negative_transfer": None,
        "disagreement_rate": float(np.mean(multi.labels != single.labels)),
        "disagreements": _disagreement_counts(gold, multi, single),
        "examples": _examples(texts, gold, multi, single, max_examples),
        "unseen_gold_labels": {},
        "plots": {},
    }
    ci = None
    if labeled.any():
        y = gold[labeled].astype(str)
        m, s = multi.subset(labeled), single.subset(labeled)
        entry["multitask"], entry["single_task"] = _score(y, m), _score(y, s)
        ratio = stats.transfer_ratio(entry["multitask"]["macro_f1"], entry["single_task"]["macro_f1"])
        ci = stats.paired_bootstrap_diff_ci(y, m.labels, s.labels, stats.macro_f1, n_bootstrap, 0.95, seed)
        seen = set(m.classes) | set(s.classes)
        unseen, counts = np.unique([g for g in y if g not in seen], return_counts=True)
        entry.update(
            transfer_ratio=ratio,
            macro_f1_diff=entry["multitask"]["macro_f1"] - entry["single_task"]["macro_f1"],
            macro_f1_diff_ci95=list(ci),
            mcnemar_p=stats.mcnemar_p_value(m.labels == y, s.labels == y),
            negative_transfer=ratio is not None and ratio < NEGATIVE_TRANSFER_BELOW,
            unseen_gold_labels={str(k): int(v) for k, v in zip(unseen, counts)},
            plots=_write_plots(task, y, m, s, report_dir),
        )
    entry["verdict"] = verdict(ci)
    return entry


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


# --------------------------------------------------------------------------- output


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _fmt_p(p: float | None) -> str:
    return "n/a" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def _fmt_ci(ci: list[float] | None) -> str:
    return "n/a" if ci is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _cell(text: Any) -> str:
    # Ticket text may contain pipes and newlines, which would break a markdown table row.
    return " ".join(str(text).split()).replace("|", "\\|")


def _md_summary(report: dict[str, Any]) -> list[str]:
    lines = [
        "## Summary",
        "",
        "| Task | Verdict | Labeled | Macro-F1 multi | Macro-F1 single | Diff (95% CI) | McNemar p | Disagreement |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for task, t in report["tasks"].items():
        verdict = t["verdict"] + (" ⚠ negative transfer" if t["negative_transfer"] else "")
        lines.append(
            f"| {_cell(task)} | {verdict} | {t['n_labeled']} | {_fmt(t['multitask']['macro_f1'])} | "
            f"{_fmt(t['single_task']['macro_f1'])} | {_fmt_ci(t['macro_f1_diff_ci95'])} | "
            f"{_fmt_p(t['mcnemar_p'])} | {t['disagreement_rate']:.1%} |"
        )
    if report["skipped_tasks"]:
        lines += ["", "Not compared (model on one side only):", ""]
        lines += [f"- **{_cell(name)}**: {_cell(reason)}" for name, reason in report["skipped_tasks"].items()]
    return lines + [""]


def _mb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f} MiB"


def _md_memory_row(title: str, memory: dict[str, Any], key: str) -> str:
    return f"| {title} | {_mb(memory['multitask'][key])} | {_mb(memory['single_task'][key])} |"


def _md_cost(report: dict[str, Any]) -> list[str]:
    lat, mem = report["latency"], report["memory"]
    speedup = "n/a" if lat["speedup"] is None else f"{lat['speedup']:.2f}×"
    return [
        "## Cost",
        "",
        f"Timed on {lat['n_tickets_timed']} tickets, batch size {lat['batch_size']}, median of "
        f"{lat['repeats']} runs after one warm-up, on `{report['device']}`. "
        f"Single-task time is the sum over {len(report['tasks'])} separate model(s)"
        + (" (the multi-task pass also runs the heads of the tasks not compared)." if report["skipped_tasks"] else "."),
        "",
        "| | Multi-task | Single-task (all) |",
        "| --- | ---: | ---: |",
        f"| ms per ticket | {lat['multitask_ms_per_ticket']:.2f} | {lat['single_task_ms_per_ticket']:.2f} |",
        _md_memory_row("model weights (params + buffers)", mem, "param_bytes"),
        _md_memory_row("peak GPU memory", mem, "cuda_peak_allocated_bytes"),
        "",
        f"**Speedup of the multi-task model: {speedup}** (single-task time ÷ multi-task time).",
        "",
    ]


def _md_examples(examples: list[dict[str, Any]]) -> list[str]:
    lines = ["| Row | Ticket | Multi-task | Single-task | Gold |", "| ---: | --- | --- | --- | --- |"]
    for ex in examples:
        m, s = ex["multitask"], ex["single_task"]
        lines.append(
            f"| {ex['row']} | {_cell(ex['text'])} | {_cell(m['label'])} ({m['confidence']:.2f}) | "
            f"{_cell(s['label'])} ({s['confidence']:.2f}) | {_cell(ex['gold'] if ex['gold'] is not None else '—')} |"
        )
    return lines + [""]


def _md_task(task: str, t: dict[str, Any]) -> list[str]:
    lines = [f"### {_cell(task)}", "", f"Verdict: **{t['verdict']}** ({t['n_labeled']} labeled tickets)."]
    if t["negative_transfer"]:
        drop = -t["transfer_ratio"]
        lines.append(f"⚠ Negative transfer: multi-task macro-F1 is {drop:.1%} below the single-task model.")
    lines.append("")
    if t["n_labeled"]:
        lines += ["| Metric | Multi-task | Single-task |", "| --- | ---: | ---: |"]
        lines += [f"| {n} | {_fmt(t['multitask'][n])} | {_fmt(t['single_task'][n])} |" for n in METRIC_NAMES]
        ratio = "n/a" if t["transfer_ratio"] is None else f"{t['transfer_ratio']:+.1%}"
        lines += ["", f"Transfer ratio (macro-F1): {ratio}; McNemar p = {_fmt_p(t['mcnemar_p'])}.", ""]
        if t["unseen_gold_labels"]:
            unseen = ", ".join(f"{_cell(k)} ({v})" for k, v in t["unseen_gold_labels"].items())
            lines += [f"Gold labels neither model knows (counted as wrong for both): {unseen}.", ""]
        p = t["plots"]
        lines += [
            f"![confusion matrix, multi-task]({p['confusion_multitask']}) "
            f"![confusion matrix, single-task]({p['confusion_single_task']})",
            "",
            f"![reliability diagram]({p['reliability']})",
            "",
        ]
    d = t["disagreements"]
    lines.append(f"The models disagree on {d['n']} tickets ({t['disagreement_rate']:.1%}).")
    if d["n_with_gold"]:
        lines[-1] += (
            f" Of the {d['n_with_gold']} with a gold label, the multi-task model was right on {d['multitask_right']}, "
            f"the single-task model on {d['single_task_right']}, neither on {d['both_wrong']}."
        )
    if not t["examples"]:
        return lines + [""]
    return lines + ["", "Example disagreements (row = data row in the input file):", ""] + _md_examples(t["examples"])


HOW_TO_READ = """## How to read this

- **Macro-F1** averages the F1 score of every label equally, so rare queues count as much as common ones.
- **Diff (95% CI)** is multi-task minus single-task macro-F1, with a bootstrap 95% confidence interval: the
  tickets were resampled many times and both models re-scored on the same sample. If the whole interval is
  above 0 the multi-task model is **better**; entirely below 0, **worse**; if it straddles 0 the difference is
  **within noise** for this amount of data.
- **McNemar p** asks whether the two models' per-ticket right/wrong answers differ more than chance would
  explain. Small values (e.g. below 0.05) mean the difference is unlikely to be luck; large values mean the
  data cannot tell them apart. It says nothing about how large the difference is.
- **Negative transfer** is flagged when the shared multi-task model's macro-F1 is more than 5% (relative)
  below the dedicated single-task model: sharing the encoder with other tasks hurt this task.
- **ECE** (expected calibration error) measures how far confidence is from actual accuracy; 0 is perfect.
  In the reliability diagrams, points below the diagonal mean the model is over-confident.
- **Disagreement** is computed on every ticket, labeled or not: it is how often switching to the
  multi-task model would change the routing decision.
"""


def render_markdown(report: dict[str, Any]) -> str:
    """Markdown report for a support-ops reader, from the ``report.json`` dictionary."""
    lines = [
        "# Shadow comparison: multi-task router vs single-task models",
        "",
        f"Multi-task model `{report['model_dir']}` against baselines in `{report['baselines_dir']}` "
        f"on {report['n_tickets']} tickets from `{report['data_path']}`.",
        "",
    ]
    lines += _md_summary(report) + _md_cost(report) + [HOW_TO_READ, "## Per task", ""]
    for task, t in report["tasks"].items():
        lines += _md_task(task, t)
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry point


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
        m = _to_predictions(multi_proba, multi.labels[task], task, len(texts))
        single_proba = baseline.predict_proba(texts, batch_size=batch_size)
        s = _to_predictions(single_proba, baseline.labels[task], task, len(texts))
        gold = _gold_labels(table, column)
        tasks[task] = {"gold_column": column, **_compare_task(
            task, texts, gold, m, s, report_dir, n_bootstrap=n_bootstrap, seed=seed, max_examples=max_examples,
        )}
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
        "settings": {"batch_size": batch_size, "latency_repeats": latency_repeats,
                     "n_bootstrap": n_bootstrap, "seed": seed, "ece_bins": ECE_BINS},
    })
    # allow_nan=False: fail loudly here rather than write a file other tools cannot parse.
    (report_dir / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    (report_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
    logger.info("report written to %s", report_dir)
    return report
