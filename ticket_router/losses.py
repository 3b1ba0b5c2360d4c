"""Per-task losses and how they are combined.

`masked_task_losses` gives one cross-entropy per task over the rows labeled for it (IGNORE_INDEX and
UNSEEN_INDEX rows are left out); a task with no labeled row in the batch contributes an exact zero that stays
attached to the graph, so every head still receives a (zero) gradient and distributed training sees no unused
parameter.

`combine_task_losses` turns them into the training objective:
- EQUAL: the sum of the task losses;
- FIXED: a user-weighted sum;
- UNCERTAINTY: Kendall, Gal & Cipolla (2018), "Multi-Task Learning Using Uncertainty to Weigh Losses", with one
  learned log-variance s_t per task: sum_t exp(-s_t) * L_t + s_t / 2 (the classification form). Its optimum is
  s_t = log(2 L_t): a task whose loss is high gets a low weight. Tasks absent from a batch add nothing, not even
  their s_t / 2 term, which would otherwise drag s_t down on batches that carry no information about it.
  With a weight floor f > 0, s_t is capped at -log f (its weight exp(-s_t) never drops below f).
- DWA, GRADNORM, FAMO: a weighted sum whose multipliers come from a stateful balancer (`balancing.py`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .settings import LossWeighting  # noqa: F401  declared with the other knobs in settings.py (no torch there)


def masked_task_losses(
    logits: Sequence[torch.Tensor],
    labels: torch.Tensor,
    class_weights: Sequence[torch.Tensor | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (losses [T], present [T] bool): mean cross-entropy of each task over its labeled rows."""
    sums = masked_task_sums(logits, labels, class_weights)
    return sums.means(), sums.count > 0


@dataclass
class TaskLossSums:
    """Per task, over one batch's labeled rows: sum of w[y] * nll (attached), sum of w[y] and row count (detached).

    A task's mean loss is nll / weight. Kept apart so that several processes can add their sums before dividing
    (`distributed.global_task_losses`): a mean of per-process means is wrong when label counts differ by process."""

    nll: torch.Tensor
    weight: torch.Tensor
    count: torch.Tensor

    def means(self) -> torch.Tensor:
        # No labeled row: 0 / 1 = an exact zero that stays attached to the graph (every head gets a zero gradient).
        return self.nll / self.weight.clamp_min(1e-12)


def masked_task_sums(
    logits: Sequence[torch.Tensor],
    labels: torch.Tensor,
    class_weights: Sequence[torch.Tensor | None] | None = None,
) -> TaskLossSums:
    """The sums behind `masked_task_losses`.

    Every row is scored and the unlabeled ones get weight 0, instead of selecting the labeled rows: a boolean
    index or `bool(mask.any())` has to read the mask back to the host, and on a GPU each such read stalls the
    step until the device has caught up. The weighted mean is torch's own (sum of w[y] * nll over sum of w[y]).
    """
    nll_sums, weight_sums, counts = [], [], []
    for t, task_logits in enumerate(logits):
        task_labels = labels[:, t]
        mask = task_labels >= 0
        safe_labels = torch.where(mask, task_labels, torch.zeros_like(task_labels))
        nll = F.cross_entropy(task_logits.float(), safe_labels, reduction="none")
        row_weights = mask.float()
        weight = None if class_weights is None else class_weights[t]
        if weight is not None:
            row_weights = row_weights * weight.to(device=task_logits.device, dtype=torch.float32)[safe_labels]
        nll_sums.append((nll * row_weights).sum())
        weight_sums.append(row_weights.sum())
        counts.append(mask.sum())
    return TaskLossSums(torch.stack(nll_sums), torch.stack(weight_sums).detach(), torch.stack(counts).float())


def combine_task_losses(
    losses: torch.Tensor,
    present: torch.Tensor,
    weighting: LossWeighting,
    log_vars: torch.Tensor | None = None,
    fixed_weights: torch.Tensor | None = None,
    weight_floor: float = 0.0,
) -> torch.Tensor:
    """Combine per-task losses into one scalar (see the module docstring for the formulas).

    `fixed_weights` holds the multipliers of FIXED and of the balancer-driven weightings (DWA, GRADNORM, FAMO)."""
    if weighting is LossWeighting.EQUAL:
        return losses.sum()
    if weighting is not LossWeighting.UNCERTAINTY:
        return (fixed_weights.to(losses) * losses).sum()
    log_vars = capped_log_vars(log_vars, weight_floor)
    terms = torch.exp(-log_vars) * losses + 0.5 * log_vars
    return torch.where(present, terms, torch.zeros_like(terms)).sum()


def capped_log_vars(log_vars: torch.Tensor, weight_floor: float = 0.0) -> torch.Tensor:
    """s_t capped at -log(floor): an uncertainty weight exp(-s_t) never below the floor (no cap without one)."""
    log_vars = log_vars.float()
    return log_vars.clamp(max=-math.log(weight_floor)) if weight_floor > 0 else log_vars


def effective_weights(
    weighting: LossWeighting, num_tasks: int, log_vars: torch.Tensor | None, fixed_weights: torch.Tensor | None,
    weight_floor: float = 0.0,
) -> list[float]:
    """The multiplier each task loss currently gets (for logs)."""
    if weighting is LossWeighting.UNCERTAINTY and log_vars is not None:
        return torch.exp(-capped_log_vars(log_vars.detach(), weight_floor)).tolist()
    if weighting is not LossWeighting.EQUAL and fixed_weights is not None:
        return fixed_weights.tolist()
    return [1.0] * num_tasks


def inverse_frequency_weights(counts: Sequence[int]) -> torch.Tensor:
    """Class weights n / (k * count_c) ("balanced"); a class absent from training gets weight 0 (it has no rows)."""
    counts_t = torch.tensor(list(counts), dtype=torch.float32)
    seen = counts_t > 0
    weights = torch.zeros_like(counts_t)
    weights[seen] = counts_t.sum() / (seen.sum() * counts_t[seen])
    return weights
