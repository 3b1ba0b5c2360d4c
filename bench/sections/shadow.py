"""Section `shadow`: paired router-vs-single-task statistics per seed (`run_shadow`), and router vs TF-IDF."""

from __future__ import annotations

import gc
import logging
from typing import Any

from ticket_router import metrics, stats
from ticket_router.router import Router
from ticket_router.shadow import VERDICT_BETTER, VERDICT_SAME, VERDICT_WORSE, run_shadow, verdict
from ticket_router.tasks import canonical_label

from bench.records import require_model, spread
from bench.sections.reference import labeled_rows, tfidf_model, train_and_validation
from bench.settings import Bench, shown_path

logger = logging.getLogger(__name__)

SHADOW_LATENCY_REPEATS = 3


def _shadow_task(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "multitask_macro_f1": entry["multitask"]["macro_f1"], "single_task_macro_f1": entry["single_task"]["macro_f1"],
        "macro_f1_diff": entry["macro_f1_diff"], "ci95": entry["macro_f1_diff_ci95"],
        "mcnemar_p": entry["mcnemar_p"], "verdict": entry["verdict"],
    }


def _shadow_summary(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {}
    for task in per_seed[0]["tasks"]:
        verdicts = [seed["tasks"][task]["verdict"] for seed in per_seed]
        summary[task] = {
            "mean_diff": spread([seed["tasks"][task]["macro_f1_diff"] for seed in per_seed])["mean"],
            "verdicts": verdicts, "n_seeds": len(verdicts),
            "n_worse": verdicts.count(VERDICT_WORSE), "n_better": verdicts.count(VERDICT_BETTER),
            "n_same": verdicts.count(VERDICT_SAME),
        }
    return summary


def section_shadow(bench: Bench, results: dict[str, Any]) -> dict[str, Any]:
    per_seed = []
    for seed in bench.single_seeds:
        router_dir, single_dir = bench.model_dirs(seed)
        require_model(router_dir, "router")
        require_model(single_dir / next(iter(bench.tasks)), "single")
        report_dir = bench.out / "shadow" / f"seed{seed}"
        logger.info("shadow comparison, seed %d -> %s", seed, report_dir)
        report = run_shadow(router_dir, single_dir, bench.base.validation, report_dir,
                            n_bootstrap=bench.bootstrap, latency_repeats=SHADOW_LATENCY_REPEATS)
        per_seed.append({
            "seed": seed, "report": shown_path(report_dir / "report.md"), "speedup": report["latency"]["speedup"],
            "tasks": {task: _shadow_task(entry) for task, entry in report["tasks"].items()},
        })
    return {"n_bootstrap": bench.bootstrap, "latency_repeats": SHADOW_LATENCY_REPEATS,
            "per_seed": per_seed, "summary": _shadow_summary(per_seed), "versus_tfidf": versus_tfidf(bench)}


def _tfidf_validation_predictions(bench: Bench) -> tuple[list[str], dict[str, tuple[list[int], list[str], list[str]]]]:
    """The validation texts and, per task, its labeled rows, their gold labels and the TF-IDF reference's labels."""
    train, val, train_texts, val_texts = train_and_validation(bench)
    per_task = {}
    for task, column in bench.tasks.items():
        train_x, train_y = labeled_rows(train_texts, train[column])
        gold = [canonical_label(value) for value in val[column]]
        rows = [i for i, label in enumerate(gold) if label is not None]
        predicted = tfidf_model().fit(train_x, train_y).predict([val_texts[i] for i in rows])
        per_task[task] = (rows, [gold[i] for i in rows], [str(label) for label in predicted])
    return val_texts, per_task


def versus_tfidf(bench: Bench) -> dict[str, Any]:
    """Router − TF-IDF macro-F1 per task and router seed, with the paired bootstrap CI on the same validation rows.

    The bar's "beats TF-IDF" compares means over seeds; this says whether a margin is larger than the noise of a
    608-ticket validation set, the evidence the issue asks for where a head falls short.
    """
    texts, reference = _tfidf_validation_predictions(bench)
    per_seed = []
    for seed in bench.seeds:
        router = Router.from_pretrained(require_model(bench.model_dirs(seed)[0], "router"))
        proba = router.predict_proba(texts)
        tasks = {}
        for spec in router.specs:
            rows, gold, tfidf = reference[spec.name]
            routed = [spec.labels[k] for k in proba[spec.name][rows].argmax(axis=1)]
            ci = stats.paired_bootstrap_diff_ci(gold, routed, tfidf, metrics.macro_f1, n_resamples=bench.bootstrap)
            diff = metrics.macro_f1(gold, routed) - metrics.macro_f1(gold, tfidf)
            tasks[spec.name] = {"macro_f1_diff": diff, "ci95": list(ci), "verdict": verdict(ci)}
        per_seed.append({"seed": seed, "tasks": tasks})
        del router
        gc.collect()
    summary = {task: {"verdicts": [s["tasks"][task]["verdict"] for s in per_seed],
                      "mean_diff": spread([s["tasks"][task]["macro_f1_diff"] for s in per_seed])["mean"]}
               for task in reference}
    return {"per_seed": per_seed, "summary": summary}
