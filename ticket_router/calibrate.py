"""The calibrate job: fit each head's temperature, then the routing policy, on labeled tickets; save both.

It runs after training on the validation file, and on its own as `ticket-router calibrate` on fresh labeled
tickets (desks drift: a month later the thresholds are stale), which rewrites `calibration.json` and
`policy.json` and nothing else. Temperatures come first: thresholds are fitted on the calibrated confidences the
router emits. The label pairs of the consistency check come from the training labels, never the fit file.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from .calibration import Calibration, fit_calibration, read_json
from .config import parse_number_pairs
from .errors import InputError
from .policy import (
    PRECISION_BOUNDS, LabelPairs, PolicyTargets, RoutingPolicy, fit_policy, learn_label_pairs, route_outcome,
)
from .tasks import TaskSpec

logger = logging.getLogger(__name__)

# The TrainConfig keys of the routing policy: they change calibration.json/policy.json, never the weights.
POLICY_KEYS = ("target_precision", "target_coverage", "task_targets", "consistency", "precision_bound")


def fit_routing(probabilities: dict[str, np.ndarray], labels: np.ndarray, specs: list[TaskSpec],
                lexical_weight: float, targets: PolicyTargets, label_pairs: list[LabelPairs],
                source: str | None) -> tuple[Calibration, RoutingPolicy, dict]:
    """Temperatures, then thresholds on the scaled probabilities; the summary holds ECE/NLL before and after
    and each head's threshold with its coverage and precision on these rows."""
    targets.validate([s.name for s in specs])
    calibration, report = fit_calibration(probabilities, labels, specs, lexical_weight, source)
    scaled = calibration.apply(probabilities, lexical_weight)
    policy = fit_policy(scaled, labels, specs, targets, label_pairs, source)
    summary = {"calibration": report, "policy": {name: asdict(head) for name, head in policy.heads.items()}}
    return calibration, policy, summary


def overall_route(router, probabilities: dict[str, np.ndarray], labels: np.ndarray, labeled: list[TaskSpec],
                  texts: list[str]) -> dict:
    """metrics.json's "route": the overall decision of `router`'s calibration and policy on the fit rows
    (`probabilities`: every head, uncalibrated; `labels`: columns in `labeled` order)."""
    scaled = router.calibration.apply(probabilities, router.lexical_weight) if router.calibration else probabilities
    return route_outcome(labels, scaled, texts, router.specs, labeled, router.policy)


def targets_from_config(config) -> PolicyTargets:
    """The policy keys of a TrainConfig (or of its saved JSON, as a dict)."""
    get = config.get if isinstance(config, dict) else lambda key, default: getattr(config, key, default)
    defaults = PolicyTargets()
    return PolicyTargets(get("target_precision", defaults.target_precision), get("target_coverage", None),
                         dict(get("task_targets", None) or {}), get("consistency", defaults.consistency),
                         get("precision_bound", defaults.precision_bound))


def fit_after_training(router, config, specs: list[TaskSpec], train_labels: np.ndarray, eval_labels: np.ndarray,
                       eval_texts: list[str], encoder_proba: dict[str, np.ndarray]) -> dict:
    """Fit the temperatures and thresholds of a freshly trained `router` on the validation rows and set them on it
    (its save writes calibration.json + policy.json); returns the metrics.json entries."""
    probabilities = router.predict_proba(eval_texts, encoder_proba=encoder_proba, calibrated=False)
    router.calibration, router.policy, summary = fit_routing(
        {s.name: probabilities[s.name] for s in specs}, eval_labels, specs, router.lexical_weight,
        targets_from_config(config), learn_label_pairs(train_labels, specs), config.validation)
    summary["route"] = overall_route(router, probabilities, eval_labels, specs, eval_texts)
    return summary


def _training_label_pairs(model_dir: Path, specs: list[TaskSpec]) -> list[LabelPairs]:
    """Label pairs from the training file named in training_config.json (models saved before policies)."""
    from .data import encode_labels, read_table

    config_path = model_dir / "training_config.json"
    train = read_json(config_path).get("train") if config_path.is_file() else None
    if not train or not Path(train).is_file():
        where = f"its training file {train} is not here" if train else "no training_config.json names its training file"
        logger.warning("%s: %s: no consistency check between heads", model_dir, where)
        return []
    table = read_table(train)
    present = [s for s in specs if s.column in table.column_names]
    return learn_label_pairs(encode_labels(table, present, train), present)


def _stored_targets(model_dir: Path, policy: RoutingPolicy | None) -> PolicyTargets:
    if policy is not None and policy.targets is not None:
        return policy.targets
    config_path = model_dir / "training_config.json"
    return targets_from_config(read_json(config_path)) if config_path.is_file() else PolicyTargets()


def resolve_targets(stored: PolicyTargets, target_precision: float | None = None,
                    target_coverage: float | None = None, task_targets: dict[str, float] | None = None,
                    consistency: bool | None = None, precision_bound: str | None = None) -> PolicyTargets:
    """The stored targets with the command line's overrides: a target precision replaces a stored coverage."""
    if target_precision is not None and target_coverage is not None:
        raise InputError("give --target-precision or --target-coverage, not both")
    targets = replace(stored, task_targets={**stored.task_targets, **(task_targets or {})})
    if target_precision is not None:
        targets.target_precision, targets.target_coverage = target_precision, None
    if target_coverage is not None:
        targets.target_coverage = target_coverage
    if consistency is not None:
        targets.consistency = consistency
    if precision_bound is not None:
        targets.precision_bound = precision_bound
    return targets


def calibrate_model(model_dir: str | Path, data: str, batch_size: int = 64, **overrides) -> dict:
    """Refit calibration.json and policy.json of a saved router on a labeled file; other files stay untouched.

    `overrides`: target_precision, target_coverage, task_targets, consistency, precision_bound (see
    `resolve_targets`). The summary's "route" is the overall decision on these rows. Heads
    whose label column the file lacks keep their stored temperature and threshold.
    """
    from .data import encode_labels, read_table
    from .router import Router

    model_dir = Path(model_dir)
    router = Router.from_pretrained(model_dir)
    table = read_table(data)
    present = router.labeled_specs(table, data, "calibrate on")
    gold = encode_labels(table, present, data)
    texts = router.texts_from_table(table, data)
    proba = router.predict_proba(texts, batch_size, show_progress=True, calibrated=False)
    old_policy = router.policy
    targets = resolve_targets(_stored_targets(model_dir, old_policy), **overrides)
    pairs = old_policy.label_pairs if old_policy is not None else _training_label_pairs(model_dir, router.specs)
    calibration, policy, summary = fit_routing({s.name: proba[s.name] for s in present}, gold, present,
                                               router.lexical_weight, targets, pairs, data)
    _keep_missing_heads(calibration, policy, router, present)
    router.calibration, router.policy = calibration, policy
    summary["route"] = overall_route(router, proba, gold, present, texts)
    calibration.save(model_dir)
    policy.save(model_dir)
    logger.info("Rewrote %s/calibration.json and policy.json from %s", model_dir, data)
    return summary


def _keep_missing_heads(calibration: Calibration, policy: RoutingPolicy, router, present: list[TaskSpec]) -> None:
    for spec in router.specs:
        if spec in present:
            continue
        logger.warning("task %r has no label column %r in the calibration file: its stored temperature and "
                       "threshold (if any) are kept", spec.name, spec.column)
        if router.calibration is not None and spec.name in router.calibration.temperatures:
            calibration.temperatures[spec.name] = router.calibration.temperatures[spec.name]
        if router.policy is not None and spec.name in router.policy.heads:
            policy.heads[spec.name] = router.policy.heads[spec.name]


def cmd_calibrate(args: argparse.Namespace) -> int:
    summary = calibrate_model(args.model, args.data, batch_size=args.batch_size,
                              target_precision=args.target_precision, target_coverage=args.target_coverage,
                              task_targets=parse_number_pairs(args.task_target or [], "--task-target"),
                              consistency=args.consistency, precision_bound=args.precision_bound)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def add_calibrate_command(commands) -> None:
    """`ticket-router calibrate` on the CLI's subparsers."""
    parser = commands.add_parser("calibrate", help="Refit temperatures and the auto/review thresholds on labeled "
                                                   "tickets (rewrites calibration.json and policy.json only).")
    parser.add_argument("--model", required=True, help="Model directory.")
    parser.add_argument("--data", required=True, help="Labeled file (.csv, .tsv, .jsonl, .parquet), unseen in training.")
    parser.add_argument("--target-precision", type=float,
                        help="Precision of the auto-routed tickets, every head without its own target. "
                             "Default: as stored (training: 0.9).")
    parser.add_argument("--target-coverage", type=float,
                        help="Instead: the share of tickets each head without its own target routes automatically.")
    parser.add_argument("--task-target", action="append", metavar="NAME=PRECISION",
                        help="One head's target precision, repeatable (e.g. queue=0.95).")
    parser.add_argument("--consistency", action=argparse.BooleanOptionalAction, default=None,
                        help="Send label pairs of two heads never seen together in training to review. Default: as stored.")
    parser.add_argument("--precision-bound", choices=PRECISION_BOUNDS,
                        help="Judge a target precision on its Wilson 95%% lower bound (wilson95) or on the precision of "
                             "the fit rows (point). Default: as stored (training: wilson95).")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.set_defaults(func=cmd_calibrate)
