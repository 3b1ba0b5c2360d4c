"""The routing policy: which tickets the router routes on its own ("auto") and which go to a person ("review").

Per head, a confidence threshold fitted on a labeled file: the lowest one at which the tickets routed
automatically reach a target precision (the most coverage at that precision), or the one that covers a target
share of tickets. "Reach" is judged by default on the Wilson 95% lower bound of the precision, not the precision
itself (`precision_bound: wilson95 | point`): a head that is right on 72 of its 84 most confident validation
tickets (0.857) promises only 0.76 at 95% confidence, and on unseen tickets it gave 0.747. A head whose target no
threshold reaches sends every ticket to review on its own decision, but does not vote in the ticket's overall
route (`votes: false`; `max_target` is the best precision it can promise, a target the desk can set instead).

A routed ticket goes to review when a voting head is below its threshold, when its text is empty, or when two
heads predict a label pair never seen together in the training labels (a queue that never serves the predicted
category is a misroute). Saved beside the weights as `policy.json` (sorted JSON, atomic write).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import Calibration, known_keys, read_json, write_json_atomic
from .errors import InputError, did_you_mean
from .risk_coverage import Outcomes, aurc, plot_risk_coverage, policy_outcome, risk_coverage_curve
from .tasks import IGNORE_INDEX, TaskSpec

logger = logging.getLogger(__name__)

POLICY_NAME = "policy.json"
EMPTY_TEXT = "empty text"
WILSON95, POINT = "wilson95", "point"
PRECISION_BOUNDS = (WILSON95, POINT)
_Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass
class PolicyTargets:
    """What a desk asks of each head: a precision on the tickets routed automatically, or a coverage."""

    target_precision: float = 0.9  # every head without its own target
    target_coverage: float | None = None  # instead of target_precision for the heads without their own target
    task_targets: dict[str, float] = field(default_factory=dict)  # head -> its own target precision
    consistency: bool = True  # a label pair of two heads never seen in training sends the ticket to review
    # Judge a target on the Wilson 95% lower bound of the auto-routed tickets' precision, or on the precision.
    precision_bound: str = WILSON95

    def validate(self, task_names: list[str] | None = None) -> None:
        checks = [("target_precision", self.target_precision), ("target_coverage", self.target_coverage)]
        checks += [(f"task_targets[{name}]", value) for name, value in self.task_targets.items()]
        for key, value in checks:
            if value is not None and not 0 < value <= 1:
                raise InputError(f"{key}={value!r} must be in (0, 1]")
        if self.precision_bound not in PRECISION_BOUNDS:
            raise InputError(f"precision_bound={self.precision_bound!r} is not one of {', '.join(PRECISION_BOUNDS)}"
                             f"{did_you_mean(str(self.precision_bound), PRECISION_BOUNDS)}")
        for name in self.task_targets if task_names is not None else ():
            if name not in task_names:
                raise InputError(f"task_targets: no task {name!r}{did_you_mean(name, task_names)}; "
                                 f"tasks are {', '.join(task_names)}")

    def for_head(self, name: str) -> tuple[float | None, float | None]:
        """(target precision, target coverage) of one head: exactly one of them is set."""
        if name in self.task_targets:
            return self.task_targets[name], None
        if self.target_coverage is not None:
            return None, self.target_coverage
        return self.target_precision, None


def wilson_lower_bound(right: np.ndarray, n: np.ndarray, z: float = _Z95) -> np.ndarray:
    """Wilson score interval's lower end for `right` successes out of `n` (n >= 1): the precision a head can
    promise at 95% confidence from n tickets."""
    right, n = np.asarray(right, dtype=float), np.asarray(n, dtype=float)
    p, z2 = right / n, z * z
    margin = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (p + z2 / (2 * n) - margin) / (1 + z2 / n)


def precision_by_threshold(confidence: np.ndarray, correct: np.ndarray,
                           bound: str = WILSON95) -> tuple[np.ndarray, np.ndarray]:
    """Every candidate threshold (the distinct confidences, highest first) and the precision of the tickets it
    routes (confidence >= it), or that precision's Wilson 95% lower bound."""
    order = np.argsort(-np.asarray(confidence, dtype=float), kind="stable")
    conf, right = np.asarray(confidence, dtype=float)[order], np.asarray(correct, dtype=bool)[order]
    routed = np.arange(1, len(right) + 1)
    value = np.cumsum(right) / routed if bound == POINT else wilson_lower_bound(np.cumsum(right), routed)
    # Cut only after the last of tied confidences: tickets at the threshold are all routed together.
    cut = np.r_[conf[1:] != conf[:-1], True] if len(conf) else np.zeros(0, dtype=bool)
    return conf[cut], value[cut]


def threshold_for_precision(confidence: np.ndarray, correct: np.ndarray, target: float,
                            bound: str = WILSON95) -> float | None:
    """The lowest confidence threshold whose routed tickets reach precision `target` (judged on `bound`);
    None when no threshold reaches it."""
    thresholds, value = precision_by_threshold(confidence, correct, bound)
    ok = np.flatnonzero(value >= target - 1e-12)
    return float(thresholds[ok[-1]]) if len(ok) else None


def max_target(confidence: np.ndarray, correct: np.ndarray, bound: str = WILSON95) -> float | None:
    """The highest target precision some threshold reaches, rounded down to 3 decimals (so that it is reachable)."""
    _, value = precision_by_threshold(confidence, correct, bound)
    return math.floor(float(value.max()) * 1000 + 1e-9) / 1000 if len(value) else None


def threshold_for_coverage(confidence: np.ndarray, coverage: float) -> float | None:
    """The highest threshold that routes at least `coverage` of the tickets."""
    if len(confidence) == 0:
        return None
    conf = np.sort(np.asarray(confidence, dtype=float))[::-1]
    return float(conf[max(1, math.ceil(coverage * len(conf) - 1e-9)) - 1])


@dataclass
class HeadPolicy:
    """One head: route automatically when confidence >= threshold (None: never; every ticket to review)."""

    threshold: float | None
    target_precision: float | None = None
    target_coverage: float | None = None
    # What the threshold did on the file it was fitted on:
    coverage: float | None = None
    auto_precision: float | None = None
    n: int = 0
    auto_precision_lower: float | None = None  # Wilson 95% lower bound of auto_precision: what the head promises
    votes: bool = True  # False: its target is out of reach, so its "review" does not send the ticket to review
    max_target: float | None = None  # the best precision (on the bound) any threshold reaches on the fit file

    @classmethod
    def fit(cls, outcomes: Outcomes, target_precision: float | None, target_coverage: float | None,
            bound: str = WILSON95) -> "HeadPolicy":
        if target_precision is not None:
            threshold = threshold_for_precision(outcomes.confidence, outcomes.correct, target_precision, bound)
        else:
            threshold = threshold_for_coverage(outcomes.confidence, target_coverage)
        seen = policy_outcome(outcomes, threshold)
        right = int(outcomes.correct[outcomes.confidence >= threshold].sum()) if seen["auto_n"] else 0
        lower = float(wilson_lower_bound(right, seen["auto_n"])) if seen["auto_n"] else None
        return cls(threshold, target_precision, target_coverage, seen["coverage"], seen["auto_precision"],
                   len(outcomes), lower, votes=threshold is not None or target_precision is None,
                   max_target=max_target(outcomes.confidence, outcomes.correct, bound))


@dataclass
class LabelPairs:
    """Which labels of head `second` occur with each label of head `first` in the training labels."""

    first: str
    second: str
    seen: dict[str, list[str]] = field(default_factory=dict)

    def allows(self, first_label: Any, second_label: Any) -> bool:
        return str(second_label) in self.seen.get(str(first_label), ())


def learn_label_pairs(labels: np.ndarray, specs: list[TaskSpec]) -> list[LabelPairs]:
    """Per pair of heads, the label combinations of the rows labeled for both (pairs with no such row: none)."""
    pairs = []
    for (i, a), (j, b) in combinations(enumerate(specs), 2):
        both = (labels[:, i] >= 0) & (labels[:, j] >= 0)
        if not both.any():
            continue
        seen: dict[str, set[str]] = {}
        for x, y in zip(labels[both, i], labels[both, j]):
            seen.setdefault(a.labels[x], set()).add(b.labels[y])
        pairs.append(LabelPairs(a.name, b.name, {k: sorted(v) for k, v in sorted(seen.items())}))
    return pairs


@dataclass
class RoutingPolicy:
    heads: dict[str, HeadPolicy] = field(default_factory=dict)
    label_pairs: list[LabelPairs] = field(default_factory=list)
    consistency: bool = True  # check label_pairs
    fitted_on: str | None = None
    targets: PolicyTargets | None = None  # what the thresholds were fitted for: `calibrate` refits to the same

    def save(self, directory: str | Path) -> Path:
        return write_json_atomic(Path(directory) / POLICY_NAME, asdict(self))

    @classmethod
    def load(cls, directory: str | Path) -> "RoutingPolicy | None":
        path = Path(directory) / POLICY_NAME
        if not path.is_file():
            return None
        data = known_keys(cls, read_json(path), path)
        try:
            data["heads"] = {name: HeadPolicy(**known_keys(HeadPolicy, h, path)) for name, h in data.get("heads", {}).items()}
            data["label_pairs"] = [LabelPairs(**known_keys(LabelPairs, p, path)) for p in data.get("label_pairs", [])]
            if data.get("targets") is not None:
                # A policy.json saved before the bound existed was fitted on the point precision: say so.
                data["targets"] = PolicyTargets(**{"precision_bound": POINT,
                                                   **known_keys(PolicyTargets, data["targets"], path)})
        except TypeError as error:
            raise InputError(f"{path}: not a routing policy ({error})") from None
        return cls(**data)

    def review_reasons(self, record: dict, text: str) -> list[str]:
        reasons = [EMPTY_TEXT] if not text.strip() else []
        for name, head in self.heads.items():
            if head.votes and name in record and record[name]["decision"] == "review":
                limit = ("no threshold reaches its target" if head.threshold is None
                         else f"confidence {record[name]['confidence']:.3f} < {head.threshold:.3f}")
                reasons.append(f"{name} unsure ({limit})")
        for pair in self.label_pairs if self.consistency else ():
            if pair.first not in record or pair.second not in record:
                continue
            first, second = record[pair.first]["label"], record[pair.second]["label"]
            if not pair.allows(first, second):
                reasons.append(f"{pair.first}={first} never seen with {pair.second}={second}")
        return reasons


def fit_policy(probabilities: dict[str, np.ndarray], labels: np.ndarray, specs: list[TaskSpec],
               targets: PolicyTargets, label_pairs: list[LabelPairs], source: str | None) -> RoutingPolicy:
    """Fit a threshold per head present in `probabilities` on its labeled rows (label columns in `specs` order)."""
    policy = RoutingPolicy(label_pairs=label_pairs, consistency=targets.consistency, fitted_on=source, targets=targets)
    for t, spec in enumerate(specs):
        if spec.name not in probabilities:
            continue
        head = HeadPolicy.fit(Outcomes.from_proba(probabilities[spec.name], labels[:, t]),
                              *targets.for_head(spec.name), bound=targets.precision_bound)
        if not head.votes:
            logger.warning("%s: task %r never reaches precision %s (%s) on %d labeled rows, best %s: its tickets "
                           "are marked review but it does not vote in the route; set a reachable target, e.g. "
                           "--task-target %s=%s", source, spec.name, head.target_precision,
                           targets.precision_bound, head.n, head.max_target, spec.name, head.max_target)
        policy.heads[spec.name] = head
    return policy


def log_missing_routing_files(directory: str | Path, calibration: Calibration | None,
                              policy: RoutingPolicy | None) -> None:
    """One log line when a model directory has no calibration or policy (saved before them, or never fitted)."""
    if calibration is None or policy is None:
        missing = [n for n, f in (("calibration.json", calibration), ("policy.json", policy)) if f is None]
        logger.info("%s: no %s: probabilities as the heads give them%s (`ticket-router calibrate` fits them)",
                    directory, " or ".join(missing), "; every decision 'auto'" if policy is None else "")


def overall_keys(task_names: list[str]) -> tuple[str, str]:
    """The record keys of the overall decision; prefixed with '_' where a task already has the name."""
    return tuple("_" + key if key in task_names else key for key in ("route", "review_reasons"))  # type: ignore[return-value]


def decide(records: list[dict], probabilities: dict[str, np.ndarray], texts: list[str], specs: list[TaskSpec],
           policy: RoutingPolicy | None, top_k: int = 0) -> list[dict]:
    """Add to each routed record, per head, "decision" (and with top_k, "top_k": the K best labels with their
    probabilities), and overall "route" and "review_reasons". Without a policy every decision is "auto"."""
    if top_k < 0:
        raise InputError(f"top_k={top_k!r} must be >= 0")
    route_key, reasons_key = overall_keys([s.name for s in specs])
    for i, record in enumerate(records):
        for spec in specs:
            head = policy.heads.get(spec.name) if policy is not None else None
            confidence = float(probabilities[spec.name][i].max())  # unrounded, as the threshold was fitted
            unsure = head is not None and (head.threshold is None or confidence < head.threshold)
            record[spec.name]["decision"] = "review" if unsure else "auto"
            if top_k > 0:
                best = np.argsort(-probabilities[spec.name][i], kind="stable")[:top_k]
                record[spec.name]["top_k"] = [{"label": spec.output_label(spec.labels[b]),
                                               "probability": round(float(probabilities[spec.name][i][b]), 6)}
                                              for b in best]
        reasons = policy.review_reasons(record, texts[i]) if policy is not None else []
        record[route_key], record[reasons_key] = ("review" if reasons else "auto"), reasons
    return records


def route_outcome(gold: np.ndarray, probabilities: dict[str, np.ndarray], texts: list[str], specs: list[TaskSpec],
                  labeled: list[TaskSpec], policy: RoutingPolicy | None) -> dict[str, Any]:
    """The overall decision on labeled tickets (label columns of `gold` in `labeled` order; `specs`: every head):
    the share routed "auto", the precision of those (right when every labeled voting head is right), and how
    often each review reason occurs."""
    records = [{s.name: {"label": s.output_label(s.labels[int(probabilities[s.name][i].argmax())]),
                         "confidence": float(probabilities[s.name][i].max())} for s in specs}
               for i in range(len(texts))]
    route_key, reasons_key = overall_keys([s.name for s in specs])
    records = decide(records, probabilities, texts, specs, policy)
    auto = np.array([r[route_key] == "auto" for r in records], dtype=bool)
    reasons = Counter(reason.split(" (")[0] for r in records for reason in r[reasons_key])  # "queue unsure", ...
    voting = [t for t, s in enumerate(labeled)
              if policy is None or s.name not in policy.heads or policy.heads[s.name].votes]
    columns = gold[:, voting]
    predicted = np.array([probabilities[labeled[t].name].argmax(axis=1) for t in voting]).T.reshape(columns.shape)
    known = columns != IGNORE_INDEX
    right = ((predicted == columns) | ~known).all(axis=1)
    judged = auto & known.any(axis=1)  # an auto-routed ticket with no labeled voting head cannot be scored
    return {"n": len(texts), "auto_n": int(auto.sum()),
            "auto_share": float(auto.mean()) if len(texts) else None,
            "auto_precision": float(right[judged].mean()) if judged.any() else None,
            "voting_heads": [labeled[t].name for t in voting], "review_reasons": dict(reasons.most_common())}


def flat_columns(record: dict) -> dict[str, Any]:
    """One routed record as flat CSV cells: per head label, confidence, scores, decision (and top_k) as
    `<task>_<key>`, dicts and lists as JSON; then the overall route and review reasons."""
    import json

    cells = {}
    for name, value in record.items():
        if isinstance(value, dict):
            for key, cell in value.items():
                cells[f"{name}_{key}"] = json.dumps(cell, ensure_ascii=False) if isinstance(cell, (dict, list)) else cell
        else:
            cells[name] = "; ".join(value) if isinstance(value, list) else value
    return cells


def routing_metrics(gold: np.ndarray, probabilities: dict[str, np.ndarray], specs: list[TaskSpec],
                    policy: RoutingPolicy | None, plots: str | Path | None = None) -> dict[str, dict]:
    """Per head (label columns of `gold` in `specs` order): ECE and AURC of the emitted probabilities and, with a
    policy, the threshold's coverage and precision here; with `plots`, a risk-coverage PNG per head there."""
    result = {}
    for t, spec in enumerate(specs):
        outcomes = Outcomes.from_proba(probabilities[spec.name], gold[:, t])
        metrics: dict[str, Any] = {"ece": outcomes.ece(), "aurc": aurc(outcomes.confidence, outcomes.correct)}
        head = policy.heads.get(spec.name) if policy is not None else None
        if head is not None:
            metrics.update(policy_outcome(outcomes, head.threshold), threshold=head.threshold)
        if plots is not None and len(outcomes):
            Path(plots).mkdir(parents=True, exist_ok=True)
            points = {}
            if metrics.get("auto_precision") is not None:
                target = head.target_precision or head.target_coverage
                points[f"threshold {head.threshold:.2f} (target {target})"] = (metrics["coverage"],
                                                                                1 - metrics["auto_precision"])
            plot_risk_coverage({"router": risk_coverage_curve(outcomes.confidence, outcomes.correct)},
                               f"{spec.name}: risk-coverage ({len(outcomes)} tickets)",
                               Path(plots) / f"risk_coverage_{spec.name}.png", points,
                               1 - head.target_precision if head is not None and head.target_precision else None)
        result[spec.name] = metrics
    return result
