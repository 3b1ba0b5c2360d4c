"""The shadow comparison's report: ``report.md`` from the ``report.json`` dictionary, and the PNG plots.

Both are drawn from the comparison's result (``ticket_router.shadow_compare``); nothing here computes a statistic.
Each task's section is a sequence of blocks (``TASK_BLOCKS``): a block is a function ``(task, entry, report) ->
markdown lines`` that returns [] when it has nothing to say, so a new per-task block (say, a gradient-conflict
summary beside the verdict) is one function and one line in the tuple. Plots are registered the same way in
``TASK_PLOTS``: ``(task, labeled predictions, report_dir) -> {plot key: file name}``, their names land in the
entry's ``plots`` and a block links them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ticket_router import metrics
from ticket_router.shadow_compare import ECE_BINS, METRIC_NAMES, LabeledPredictions

Report = dict[str, Any]
TaskBlock = Callable[[str, dict[str, Any], Report], list[str]]
TaskPlot = Callable[[str, LabeledPredictions, Path], dict[str, str]]


# --------------------------------------------------------------------------- formatting


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _fmt_p(p: float | None) -> str:
    return "n/a" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def _fmt_ci(ci: list[float] | None) -> str:
    return "n/a" if ci is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def cell(text: Any) -> str:
    """Text safe in a markdown table cell: ticket text may contain pipes and newlines."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _mb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f} MiB"


# --------------------------------------------------------------------------- plots


def safe_name(task: str) -> str:
    # Task names end up in file names and markdown links.
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in task)


def confusion_plots(task: str, both: LabeledPredictions, report_dir: Path) -> dict[str, str]:
    from ticket_router import plots  # matplotlib: imported only when a report draws plots

    name = safe_name(task)
    files = {}
    for side, pred, title in (("multitask", both.multitask, "multi-task"),
                              ("single_task", both.single_task, "single-task")):
        files[f"confusion_{side}"] = f"confusion_{name}_{side}.png"
        plots.plot_confusion_matrix(both.gold, pred.labels, pred.classes, f"{task}: {title}",
                                    report_dir / files[f"confusion_{side}"])
    return files


def reliability_plot(task: str, both: LabeledPredictions, report_dir: Path) -> dict[str, str]:
    from ticket_router import plots

    file = f"reliability_{safe_name(task)}.png"
    bins = [metrics.reliability_bins(p.confidence, p.labels == both.gold, ECE_BINS)
            for p in (both.multitask, both.single_task)]
    plots.plot_reliability(bins[0], bins[1], f"{task}: reliability", report_dir / file)
    return {"reliability": file}


def risk_coverage_plot(task: str, both: LabeledPredictions, report_dir: Path) -> dict[str, str]:
    """Both sides' risk-coverage curves: how many tickets each could route automatically at a given error rate."""
    from ticket_router.risk_coverage import plot_risk_coverage, risk_coverage_curve

    file = f"risk_coverage_{safe_name(task)}.png"
    curves = {title: risk_coverage_curve(p.confidence, p.labels == both.gold)
              for title, p in (("multi-task", both.multitask), ("single-task", both.single_task))}
    plot_risk_coverage(curves, f"{task}: risk-coverage", report_dir / file)
    return {"risk_coverage": file}


TASK_PLOTS: tuple[TaskPlot, ...] = (confusion_plots, reliability_plot, risk_coverage_plot)


def write_plots(task: str, both: LabeledPredictions, report_dir: Path) -> dict[str, str]:
    """Draw every registered plot of one task into ``report_dir``; {plot key: file name relative to it}."""
    files: dict[str, str] = {}
    for plot in TASK_PLOTS:
        files.update(plot(task, both, report_dir))
    return files


# --------------------------------------------------------------------------- report-level sections


def _md_summary(report: Report) -> list[str]:
    lines = [
        "## Summary",
        "",
        "| Task | Verdict | Labeled | Macro-F1 multi | Macro-F1 single | Diff (95% CI) | McNemar p | Disagreement |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for task, t in report["tasks"].items():
        verdict = t["verdict"] + (" ⚠ negative transfer" if t["negative_transfer"] else "")
        lines.append(
            f"| {cell(task)} | {verdict} | {t['n_labeled']} | {_fmt(t['multitask']['macro_f1'])} | "
            f"{_fmt(t['single_task']['macro_f1'])} | {_fmt_ci(t['macro_f1_diff_ci95'])} | "
            f"{_fmt_p(t['mcnemar_p'])} | {t['disagreement_rate']:.1%} |"
        )
    if report["skipped_tasks"]:
        lines += ["", "Not compared (model on one side only):", ""]
        lines += [f"- **{cell(name)}**: {cell(reason)}" for name, reason in report["skipped_tasks"].items()]
    return lines + [""]


def _md_memory_row(title: str, memory: dict[str, Any], key: str) -> str:
    return f"| {title} | {_mb(memory['multitask'][key])} | {_mb(memory['single_task'][key])} |"


def _md_cost(report: Report) -> list[str]:
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


# --------------------------------------------------------------------------- per-task blocks


def verdict_block(task: str, t: dict[str, Any], report: Report) -> list[str]:
    lines = [f"### {cell(task)}", "", f"Verdict: **{t['verdict']}** ({t['n_labeled']} labeled tickets)."]
    if t["negative_transfer"]:
        drop = -t["transfer_ratio"]
        lines.append(f"⚠ Negative transfer: multi-task macro-F1 is {drop:.1%} below the single-task model.")
    return lines + [""]


def metrics_block(task: str, t: dict[str, Any], report: Report) -> list[str]:
    if not t["n_labeled"]:
        return []
    lines = ["| Metric | Multi-task | Single-task |", "| --- | ---: | ---: |"]
    lines += [f"| {n} | {_fmt(t['multitask'][n])} | {_fmt(t['single_task'][n])} |" for n in METRIC_NAMES]
    ratio = "n/a" if t["transfer_ratio"] is None else f"{t['transfer_ratio']:+.1%}"
    lines += ["", f"Transfer ratio (macro-F1): {ratio}; McNemar p = {_fmt_p(t['mcnemar_p'])}.", ""]
    if t["unseen_gold_labels"]:
        unseen = ", ".join(f"{cell(k)} ({v})" for k, v in t["unseen_gold_labels"].items())
        lines += [f"Gold labels neither model knows (counted as wrong for both): {unseen}.", ""]
    return lines


def plots_block(task: str, t: dict[str, Any], report: Report) -> list[str]:
    p = t["plots"]
    if "confusion_multitask" not in p:
        return []
    return [
        f"![confusion matrix, multi-task]({p['confusion_multitask']}) "
        f"![confusion matrix, single-task]({p['confusion_single_task']})",
        "",
        f"![reliability diagram]({p['reliability']}) ![risk-coverage curves]({p['risk_coverage']})",
        "",
    ]


def _md_examples(examples: list[dict[str, Any]]) -> list[str]:
    lines = ["| Row | Ticket | Multi-task | Single-task | Gold |", "| ---: | --- | --- | --- | --- |"]
    for ex in examples:
        m, s = ex["multitask"], ex["single_task"]
        lines.append(
            f"| {ex['row']} | {cell(ex['text'])} | {cell(m['label'])} ({m['confidence']:.2f}) | "
            f"{cell(s['label'])} ({s['confidence']:.2f}) | {cell(ex['gold'] if ex['gold'] is not None else '—')} |"
        )
    return lines + [""]


def disagreement_block(task: str, t: dict[str, Any], report: Report) -> list[str]:
    d = t["disagreements"]
    line = f"The models disagree on {d['n']} tickets ({t['disagreement_rate']:.1%})."
    if d["n_with_gold"]:
        line += (
            f" Of the {d['n_with_gold']} with a gold label, the multi-task model was right on {d['multitask_right']}, "
            f"the single-task model on {d['single_task_right']}, neither on {d['both_wrong']}."
        )
    if not t["examples"]:
        return [line, ""]
    return [line, "", "Example disagreements (row = data row in the input file):", ""] + _md_examples(t["examples"])


# Order of the blocks in each task's section; add a block here to show more per task.
def conflict_block(task: str, t: dict[str, Any], report: Report) -> list[str]:
    """The head's gradients on the shared encoder during training (balancing.summarise_conflict), beside its
    verdict: a head whose gradient opposes the others' (negative mean cosine) or is far smaller is starved by
    sharing; near-orthogonal gradients of similar size point elsewhere (too few steps, the loss weighting)."""
    conflict = report.get("gradient_conflict") or {}
    norms = conflict.get("mean_grad_norm") or {}
    keys = {key for other in norms if other != task for key in (f"{task}_{other}", f"{other}_{task}")}
    pairs = {pair: v for pair, v in (conflict.get("pairs") or {}).items() if pair in keys}
    if not pairs and task not in norms:
        return []
    lines = [f"Training gradients on the shared encoder ({conflict.get('steps_logged', '?')} logged steps): "
             f"mean norm {_fmt(norms.get(task), 4)} (all heads: "
             + ", ".join(f"{cell(name)} {_fmt(value, 4)}" for name, value in norms.items()) + ")."]
    for pair, v in sorted(pairs.items()):
        lines.append(f"- {cell(pair)}: mean cosine {_fmt(v['mean_cosine'])}, negative on "
                     f"{100 * v['negative_share']:.0f}% of the logged steps")
    return lines + [""]


TASK_BLOCKS: tuple[TaskBlock, ...] = (verdict_block, conflict_block, metrics_block, plots_block, disagreement_block)


def render_task(task: str, t: dict[str, Any], report: Report) -> list[str]:
    lines: list[str] = []
    for block in TASK_BLOCKS:
        lines += block(task, t, report)
    return lines


def render_markdown(report: Report) -> str:
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
        lines += render_task(task, t, report)
    return "\n".join(lines)
