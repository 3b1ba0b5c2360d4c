"""Section `ablations`: one-key variations of the recommended config, first seed, ablation budget (--full only)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ticket_router.config import TrainConfig
from ticket_router.data import read_table
from ticket_router.tasks import canonical_label
from ticket_router.training import training_key

from bench.records import train_run
from bench.settings import Bench, shown_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    group: str
    name: str
    changes: dict[str, Any]

    @property
    def slug(self) -> str:
        text = f"{self.group}-{self.name}".lower()
        return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def ablation_variants(base: TrainConfig, missing_train: str) -> list[Variant]:
    """The recommended config, then one key changed at a time (missing labels: the training file changed)."""
    ones = {task: 1.0 for task in base.tasks}
    return [
        Variant("recommended", "recommended config", {}),
        Variant("loss weighting", "equal", {"loss_weighting": "equal"}),
        Variant("loss weighting", "fixed (weights 1.0)", {"loss_weighting": "fixed", "task_weights": ones}),
        Variant("loss weighting", "uncertainty", {"loss_weighting": "uncertainty"}),
        Variant("batch sampling", "proportional", {"sampling": "proportional"}),
        Variant("batch sampling", "random", {"sampling": "random"}),
        Variant("class weights", "on", {"class_weights": True}),
        Variant("class weights", "off", {"class_weights": False}),
        Variant("pooling", "cls", {"pooling": "cls"}),
        Variant("pooling", "mean", {"pooling": "mean"}),
        Variant("pooling", "attention", {"pooling": "attention"}),
        Variant("missing labels", "masked loss, all rows", {"train": missing_train}),
        Variant("missing labels", "drop partial rows", {"train": missing_train, "drop_partial_rows": True}),
    ]


def write_missing_labels(train_path: str, tasks: dict[str, str], rates: dict[str, float], seed: int,
                         path: Path) -> dict[str, Any]:
    """A copy of the training file with a seeded random share of each task's labels blanked."""
    frame = read_table(train_path).to_pandas()
    rng = np.random.default_rng(seed)
    blanked = {}
    for task, rate in rates.items():
        column = tasks[task]
        labeled = np.flatnonzero(frame[column].map(canonical_label).notna().to_numpy())
        chosen = rng.choice(labeled, size=round(rate * len(labeled)), replace=False)
        frame.loc[chosen, column] = ""
        blanked[task] = {"column": column, "rate": rate, "labeled": len(labeled), "blanked": len(chosen)}
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    labeled_cells = [frame[column].map(canonical_label).notna() for column in tasks.values()]
    complete = int(np.logical_and.reduce([cells.to_numpy() for cells in labeled_cells]).sum())
    logger.info("missing-labels copy %s: %s; %d of %d rows keep every label", path, blanked, complete, len(frame))
    return {"path": shown_path(path), "seed": seed, "blanked": blanked, "rows": len(frame), "complete_rows": complete}


def _reusable_runs(results: dict[str, Any]) -> dict[str, tuple[dict, str]]:
    """Router runs of this results file by training key, so an identical ablation is not trained again."""
    router = results.get("sections", {}).get("router", {})
    return {run["key"]: (run, f"router run, seed {run['seed']}") for run in router.get("runs", [])}


def _ablation_row(variant: Variant, run: dict[str, Any], source: str, is_recommended: bool) -> dict[str, Any]:
    changes = {k: (Path(v).name if k == "train" else v) for k, v in variant.changes.items()}
    return {
        "group": variant.group, "variant": variant.name, "changes": changes, "source": source,
        "is_recommended": is_recommended, "tasks": run["tasks"], "mean_macro_f1": run["mean_macro_f1"],
        "train_runtime_s": run["train_runtime_s"], "wall_s": run["wall_s"], "reused": bool(run.get("reused")),
    }


def section_ablations(bench: Bench, results: dict[str, Any]) -> dict[str, Any]:
    seed, budget = bench.seeds[0], bench.ablation_budget
    missing_path = bench.out / "ablations" / "data" / f"train_missing_seed{seed}.csv"
    missing = write_missing_labels(bench.base.train, bench.tasks, bench.missing_rates, seed, missing_path)
    known = _reusable_runs(results)
    recommended_key = training_key(asdict(bench.run_config(bench.out, seed, budget)))
    rows = []
    for variant in ablation_variants(bench.base, str(missing_path)):
        config = bench.run_config(bench.out / "ablations" / variant.slug, seed, budget, **variant.changes)
        key = training_key(asdict(config))
        if key in known:
            run, source = known[key]
            logger.info("ablation %s / %s: same training as the %s, not retrained", variant.group, variant.name, source)
        else:
            run, source = train_run(config, f"ablation {variant.group} / {variant.name}", bench.reuse), "trained"
            known[key] = (run, f"{variant.group} / {variant.name} ablation")
        rows.append(_ablation_row(variant, run, source, key == recommended_key))
    return {"seed": seed, "budget": asdict(budget), "main_budget": asdict(bench.budget), "missing_labels": missing,
            "rows": rows}
