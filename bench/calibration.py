#!/usr/bin/env python
"""Calibration and routing-policy benchmark (issue 13): fit on one labeled file, measure on tickets never seen.

    python -m bench.calibration --model runs/st-split --fit validation.csv --holdout holdout.csv \
        --target-precision 0.85 --plots docs --output runs/calibration-st.json

1. `calibrate_model`: temperatures and thresholds fitted on --fit (rewrites the model's calibration.json and
   policy.json, as `ticket-router calibrate` does);
   The fit summary holds, per head, the NLL-optimal and the applied temperature with the cross-validated ECE
   before/after and its standard error, and each threshold with the precision it promises (Wilson lower bound),
   whether the head votes and the best target it could reach (max_target);
2. one routing pass over --holdout: per head ECE and NLL before (uncalibrated) and after temperature scaling,
   the stored policy's coverage and precision of the auto-routed tickets, AURC, and the overall route: the share
   of tickets routed "auto" (every voting head sure, a consistent label pair), their precision, review reasons.

Prints and writes one JSON; with --plots, one risk-coverage PNG per head (holdout).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

from ticket_router.calibrate import calibrate_model
from ticket_router.calibration import nll
from ticket_router.config import parse_number_pairs
from ticket_router.data import encode_labels, read_table
from ticket_router.policy import PRECISION_BOUNDS, WILSON95, route_outcome, routing_metrics
from ticket_router.risk_coverage import Outcomes
from ticket_router.router import Router
from ticket_router.serialization import json_safe
from ticket_router.tasks import IGNORE_INDEX


def measure(router: Router, holdout: str, plots: str | None, batch_size: int) -> dict:
    table = read_table(holdout)
    present = router.labeled_specs(table, holdout, "measure")
    gold = encode_labels(table, present, holdout)
    texts = router.texts_from_table(table, holdout)
    raw = router.predict_proba(texts, batch_size, calibrated=False)
    scaled = router.calibration.apply(raw, router.lexical_weight) if router.calibration else raw
    heads = routing_metrics(gold, scaled, present, router.policy, plots)
    for t, spec in enumerate(present):
        head = router.policy.heads.get(spec.name) if router.policy else None
        heads[spec.name].update(
            ece_before=Outcomes.from_proba(raw[spec.name], gold[:, t]).ece(), ece_after=heads[spec.name].pop("ece"),
            nll_before=nll(raw[spec.name], gold[:, t]), nll_after=nll(scaled[spec.name], gold[:, t]),
            temperature=router.calibration.temperatures.get(spec.name) if router.calibration else None,
            votes=head.votes if head else None, n=int((gold[:, t] != IGNORE_INDEX).sum()))
    return {"heads": heads, "tickets": len(texts),
            "route": route_outcome(gold, scaled, texts, router.specs, present, router.policy)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Model directory (its calibration.json/policy.json are rewritten).")
    parser.add_argument("--fit", required=True, help="Labeled file the temperatures and thresholds are fitted on.")
    parser.add_argument("--holdout", required=True, help="Labeled file never seen in training nor fitting.")
    parser.add_argument("--target-precision", type=float)
    parser.add_argument("--task-target", action="append", default=[], metavar="NAME=PRECISION")
    parser.add_argument("--precision-bound", choices=PRECISION_BOUNDS, default=WILSON95,
                        help="What a target precision is judged on when fitting the thresholds (default %(default)s).")
    parser.add_argument("--plots", help="Directory for one risk-coverage PNG per head on the holdout.")
    parser.add_argument("--output", help="Write the JSON here too.")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    started = time.time()
    fitted = calibrate_model(args.model, args.fit, batch_size=args.batch_size, target_precision=args.target_precision,
                             task_targets=parse_number_pairs(args.task_target, "--task-target"),
                             precision_bound=args.precision_bound)
    result = {
        "command": " ".join(["python", "-m", "bench.calibration", *(argv or sys.argv[1:])]),
        "machine": f"{platform.node()} {os.cpu_count()} CPU, load average {os.getloadavg()[0]:.1f} at start",
        "fit": {"file": args.fit, **fitted},
        "holdout": {"file": args.holdout, **measure(Router.from_pretrained(args.model), args.holdout, args.plots,
                                                    args.batch_size)},
        "seconds": round(time.time() - started, 1),
    }
    text = json.dumps(json_safe(result), indent=2, sort_keys=True)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
