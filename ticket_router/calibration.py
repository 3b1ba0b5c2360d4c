"""Temperature scaling: one temperature per head, so that a confidence of 0.8 is right about 80% of the time.

The temperature is fitted on the probabilities the router actually emits: fused with the lexical heads where
they are on, so there are no logits to divide. Scaling log-probabilities does the same job: p^(1/T)
renormalised is softmax(log p / T), which for the encoder heads alone is exactly softmax(logits / T) (log p
differs from the logits by a per-row constant). T > 1 softens over-confident heads, T < 1 sharpens timid ones;
the predicted label never changes, so accuracy and macro-F1 do not move. T minimises the negative
log-likelihood (NLL) of the gold labels on a labeled file with a bounded 1-D optimiser.

NLL and calibration error are different targets, and a temperature fitted on a few hundred tickets partly fits
their noise: a fused head (the average of two distributions) can be well calibrated already and still gain NLL
from a small change of T that makes its ECE on unseen tickets worse. So the fitted T is applied only when
cross-validation on the fit file says it pays: 5 stratified folds, for each one T fitted on the other four and
the fold's ECE measured with that T and with T = 1; T is applied when the mean ECE gain exceeds one standard
error of the per-fold gains (the one-SE rule), else the head keeps T = 1. `calibration.json` records, per head,
the fitted and the applied T, the cross-validated ECE before/after, the standard error and why.

Saved beside the weights as `calibration.json` (sorted JSON, written atomically); `Router` applies it after
fusion. It records the lexical weight it was fitted at: routing at another weight skips it, with a warning.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .atomic import atomic_file
from .errors import InputError
from .lexical import softmax
from .risk_coverage import Outcomes
from .tasks import IGNORE_INDEX, TaskSpec

logger = logging.getLogger(__name__)

CALIBRATION_NAME = "calibration.json"
TEMPERATURE_BOUNDS = (0.05, 20.0)
# Below this many labeled rows a head keeps T = 1: a temperature fitted on a handful of tickets is noise.
MIN_ROWS = 20
CV_FOLDS = 5
CV_SEED = 0  # the folds are drawn once per fit file: the same file gives the same decision
_FLOOR = 1e-12  # log(0) guard: a fused probability of exactly 0 cannot come back, but it must not be -inf


def _log_proba(proba: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), _FLOOR, 1.0))


def scale(proba: np.ndarray, temperature: float) -> np.ndarray:
    """p^(1/T) renormalised over each row, i.e. softmax(log p / T)."""
    if temperature == 1.0:
        return proba
    return softmax(_log_proba(proba) / temperature).astype(np.asarray(proba).dtype)


def nll(proba: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean negative log-likelihood of the gold labels (rows with a known label only)."""
    keep = np.asarray(labels) >= 0
    if not keep.any():
        return None
    picked = np.asarray(proba)[keep][np.arange(int(keep.sum())), np.asarray(labels)[keep]]
    return float(-_log_proba(picked).mean())


def fit_temperature(proba: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the NLL of `labels` (class ids; negative ids are left out)."""
    keep = np.asarray(labels) >= 0
    log_p, gold = _log_proba(np.asarray(proba)[keep]), np.asarray(labels)[keep]
    if len(gold) == 0:
        raise InputError("cannot fit a temperature without labeled rows")
    rows = np.arange(len(gold))

    def loss(log_t: float) -> float:
        z = log_p / math.exp(log_t)
        top = z.max(axis=1)
        log_norm = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
        return float((log_norm - z[rows, gold]).mean())

    # Searching log T keeps the optimiser's steps even between sharpening and softening.
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    from scipy.optimize import minimize_scalar  # here: `ticket-router --help` must not load scipy

    result = minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-5})
    return float(math.exp(result.x))


@dataclass
class TemperatureFit:
    """How one head's temperature was chosen: calibration.json's `fits` and the fit report."""

    nll_optimal: float  # the temperature minimising the NLL of every fit row
    applied: float  # nll_optimal, or 1 where cross-validation shows no ECE gain beyond noise
    cv_ece_before: float | None = None  # mean over the folds of a held-out fold's ECE at T = 1 ...
    cv_ece_after: float | None = None  # ... and at the T fitted on the other folds
    cv_gain_se: float | None = None  # standard error of the per-fold gains (before - after)
    why: str = ""


def stratified_folds(labels: np.ndarray, folds: int, seed: int = CV_SEED) -> np.ndarray:
    """A fold id per row: rows shuffled with `seed`, then dealt out label by label, so each fold holds about
    1/folds of every label."""
    order = np.random.default_rng(seed).permutation(len(labels))
    order = order[np.argsort(np.asarray(labels)[order], kind="stable")]
    fold_of = np.empty(len(labels), dtype=int)
    fold_of[order] = np.arange(len(labels)) % folds
    return fold_of


def cross_validated_temperature(proba: np.ndarray, labels: np.ndarray, folds: int = CV_FOLDS,
                                seed: int = CV_SEED) -> TemperatureFit:
    """The NLL-optimal temperature of every labeled row, applied only when it lowers the held-out ECE of a
    `folds`-fold cross-validation by more than one standard error (else T = 1)."""
    keep = np.asarray(labels) != IGNORE_INDEX  # rows with an unseen label stay: ECE counts them as errors
    proba, labels = np.asarray(proba)[keep], np.asarray(labels)[keep]
    rows = int((labels >= 0).sum())
    if rows < MIN_ROWS:
        return TemperatureFit(1.0, 1.0, why=f"{rows} labeled row(s) < {MIN_ROWS}: T = 1")
    fitted = fit_temperature(proba, labels)
    fold_of = stratified_folds(labels, folds, seed)
    before, after = [], []
    for k in range(folds):
        held_out = fold_of == k
        t = fit_temperature(proba[~held_out], labels[~held_out])
        before.append(Outcomes.from_proba(proba[held_out], labels[held_out]).ece())
        after.append(Outcomes.from_proba(scale(proba[held_out], t), labels[held_out]).ece())
    gains = np.array(before) - np.array(after)
    gain, se = float(gains.mean()), float(gains.std(ddof=1) / math.sqrt(folds))
    applies = gain > se
    why = (f"{folds}-fold CV ECE gain {gain:.4f} {'>' if applies else '<='} 1 SE {se:.4f}"
           + ("" if applies else ": T = 1"))
    return TemperatureFit(fitted, fitted if applies else 1.0, float(np.mean(before)), float(np.mean(after)), se, why)


@dataclass
class Calibration:
    """Per head, the temperature applied to the emitted probabilities (heads not listed keep T = 1)."""

    temperatures: dict[str, float] = field(default_factory=dict)
    lexical_weight: float = 0.0  # the fusion the temperatures were fitted for
    fitted_on: str | None = None  # the labeled file
    rows: dict[str, int] = field(default_factory=dict)  # labeled rows per head it was fitted on
    fits: dict[str, TemperatureFit] = field(default_factory=dict)  # how each temperature was chosen (none: older)

    def apply(self, probabilities: dict[str, np.ndarray], lexical_weight: float) -> dict[str, np.ndarray]:
        if not math.isclose(lexical_weight, self.lexical_weight, abs_tol=1e-9):
            logger.warning("calibration.json was fitted at lexical_weight=%s; routing at %s uncalibrated",
                           self.lexical_weight, lexical_weight)
            return probabilities
        return {name: scale(p, self.temperatures.get(name, 1.0)) for name, p in probabilities.items()}

    def save(self, directory: str | Path) -> Path:
        return write_json_atomic(Path(directory) / CALIBRATION_NAME, asdict(self))

    @classmethod
    def load(cls, directory: str | Path) -> "Calibration | None":
        path = Path(directory) / CALIBRATION_NAME
        if not path.is_file():
            return None
        data = known_keys(cls, read_json(path), path)
        try:
            data["fits"] = {name: TemperatureFit(**known_keys(TemperatureFit, fit, path))
                            for name, fit in data.get("fits", {}).items()}
            return cls(**data)
        except TypeError as error:
            raise InputError(f"{path}: not a calibration ({error})") from None


def fit_calibration(probabilities: dict[str, np.ndarray], labels: np.ndarray, specs: list[TaskSpec],
                    lexical_weight: float, source: str | None) -> tuple[Calibration, dict[str, dict]]:
    """Fit every head present in `probabilities` on the label matrix (columns in `specs` order).

    Returns the calibration and, per head, how its temperature was chosen with the ECE and NLL before and after
    on these rows.
    """
    calibration = Calibration(lexical_weight=lexical_weight, fitted_on=source)
    report = {}
    for t, spec in enumerate(specs):
        if spec.name not in probabilities:
            continue
        proba, gold = probabilities[spec.name], labels[:, t]
        rows = int((gold >= 0).sum())
        if rows < MIN_ROWS:
            logger.warning("%s: task %r has %d labeled row(s) (< %d): its temperature stays 1",
                           source, spec.name, rows, MIN_ROWS)
        fit = cross_validated_temperature(proba, gold)
        calibration.temperatures[spec.name], calibration.rows[spec.name] = fit.applied, rows
        calibration.fits[spec.name] = fit
        scaled = scale(proba, fit.applied)
        report[spec.name] = {
            "temperature": round(fit.applied, 4), "nll_optimal_temperature": round(fit.nll_optimal, 4), "n": rows,
            "cv_ece_before": fit.cv_ece_before, "cv_ece_after": fit.cv_ece_after, "cv_gain_se": fit.cv_gain_se,
            "why": fit.why,
            "ece_before": Outcomes.from_proba(proba, gold).ece(), "ece_after": Outcomes.from_proba(scaled, gold).ece(),
            "nll_before": nll(proba, gold), "nll_after": nll(scaled, gold),
        }
        logger.info("%s: task %r: temperature %.3f (NLL-optimal %.3f; %s), ECE here %.4f -> %.4f", source,
                    spec.name, fit.applied, fit.nll_optimal, fit.why, report[spec.name]["ece_before"] or 0.0,
                    report[spec.name]["ece_after"] or 0.0)
    return calibration, report


def write_json_atomic(path: Path, data: dict) -> Path:
    """Sorted JSON written beside `path`, then moved over it (atomic.atomic_file): a reader never sees half a file,
    and a failed write leaves the old one in place."""
    with atomic_file(path) as out:
        out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def known_keys(cls, data: dict, path: Path) -> dict:
    """The keys of `data` that `cls` (a dataclass) has; the others are dropped with a warning (a newer version)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        logger.warning("%s: ignoring unknown keys %s (saved by a newer ticket_router?)", path, unknown)
    return {k: v for k, v in data.items() if k in known}
