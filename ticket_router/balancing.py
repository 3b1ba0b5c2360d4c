"""Loss-weighting methods that need state across steps, and PCGrad gradient surgery.

Each balancer turns the per-task losses of a step into detached multipliers (the trainer minimises
sum_t w_t * L_t) and keeps its state as plain floats, so that checkpoints carry it as JSON (`state_dict`).

- `DynamicWeightAverage` (Liu, Johns & Davison 2019, "End-to-End Multi-Task Learning with Attention"):
  w_t = T * softmax_t(r_t / temperature), r_t = L_t(k-1) / L_t(k-2), the ratio of a task's mean loss over the
  last two windows. The paper's windows are epochs; `make train` runs 1.5 epochs, so windows are `window` steps.
  A task whose loss stalls (r near 1) gets more weight than one whose loss falls.
- `GradNorm` (Chen et al. 2018): learned weights such that each task's weighted gradient norm on the shared
  representation, G_t = w_t ||dL_t/dh||, moves towards mean(G) * (L_t/L_t(0) / mean_s L_s/L_s(0))^alpha. A task
  that trains slowly (high loss ratio) is pushed up. The weights take an Adam step on |G_t - target_t| (the target
  held constant, as in the paper) and are renormalised to sum to T.
- `FAMO` (Liu et al. 2023, "Fast Adaptive Multitask Optimization"): task logits xi, z = softmax(xi), objective
  sum_t z_t log(L_t - min_t) / c; the logits move so that the log-losses decrease at equal rates. The paper
  measures the decrease on the same batch after the update (one more forward pass); here it is measured between
  consecutive steps' batches (no extra pass), an approximation whose noise the logits' Adam averages out.
- `pcgrad` (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning"): each task gradient loses its component
  along any other task gradient it conflicts with (negative dot product), in a random order per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

_EPS = 1e-8


@dataclass
class BalancerSettings:
    dwa_temperature: float = 2.0
    dwa_window_steps: int = 25
    gradnorm_alpha: float = 1.5
    balancer_learning_rate: float = 0.025
    famo_weight_decay: float = 0.001


class _Adam:
    """Adam on a short list of floats (the balancers' own parameters), with JSON-friendly state."""

    def __init__(self, size: int, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999)):
        self.lr, self.weight_decay, self.betas = lr, weight_decay, betas
        self.m, self.v, self.t = [0.0] * size, [0.0] * size, 0

    def step(self, params: list[float], grads: Sequence[float]) -> list[float]:
        b1, b2 = self.betas
        self.t += 1
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            g = g + self.weight_decay * p
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            m_hat, v_hat = self.m[i] / (1 - b1**self.t), self.v[i] / (1 - b2**self.t)
            out.append(p - self.lr * m_hat / (math.sqrt(v_hat) + _EPS))
        return out

    def state_dict(self) -> dict:
        return {"m": list(self.m), "v": list(self.v), "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.m, self.v, self.t = list(state["m"]), list(state["v"]), int(state["t"])


class TaskBalancer:
    """Base: equal multipliers, no state. Subclasses override `weights` and the update hooks."""

    needs_task_gradients = False  # whether `observe_gradient_norms` must be fed each step

    def __init__(self, num_tasks: int, settings: BalancerSettings):
        self.num_tasks, self.settings = num_tasks, settings

    def weights(self, losses: Sequence[float]) -> list[float]:
        """Multipliers of this batch's task losses (`losses`, already passed to `observe_losses`)."""
        return [1.0] * self.num_tasks

    def observe_losses(self, losses: Sequence[float], present: Sequence[bool]) -> None:
        """Called once per batch, before `weights`, with its (unweighted) task losses."""

    def observe_gradient_norms(self, norms: Sequence[float], losses: Sequence[float], present: Sequence[bool]) -> None:
        """Called once per step with ||dL_t/dh|| per task (only when `needs_task_gradients`)."""

    def state_dict(self) -> dict:
        return {key: value for key, value in vars(self).items() if key not in ("num_tasks", "settings", "adam")} | (
            {"adam": self.adam.state_dict()} if hasattr(self, "adam") else {})

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            if key == "adam":
                self.adam.load_state_dict(value)
            else:
                setattr(self, key, value)


class DynamicWeightAverage(TaskBalancer):
    def __init__(self, num_tasks: int, settings: BalancerSettings):
        super().__init__(num_tasks, settings)
        self.window_sums, self.window_counts = [0.0] * num_tasks, [0] * num_tasks
        self.steps_in_window = 0
        self.history: list[list[float]] = []  # mean loss per task of the last two finished windows
        self.current = [1.0] * num_tasks

    def weights(self, losses: Sequence[float]) -> list[float]:
        return list(self.current)

    def observe_losses(self, losses, present) -> None:
        for t, (loss, seen) in enumerate(zip(losses, present)):
            if seen:
                self.window_sums[t] += float(loss)
                self.window_counts[t] += 1
        self.steps_in_window += 1
        if self.steps_in_window < self.settings.dwa_window_steps:
            return
        previous = self.history[-1] if self.history else [1.0] * self.num_tasks
        means = [s / c if c else p for s, c, p in zip(self.window_sums, self.window_counts, previous)]
        self.history = (self.history + [means])[-2:]
        self.window_sums, self.window_counts, self.steps_in_window = [0.0] * self.num_tasks, [0] * self.num_tasks, 0
        if len(self.history) == 2:
            ratios = [last / max(before, _EPS) for last, before in zip(self.history[1], self.history[0])]
            self.current = (self.num_tasks * torch.softmax(torch.tensor(ratios) / self.settings.dwa_temperature, 0)).tolist()


class GradNorm(TaskBalancer):
    needs_task_gradients = True

    def __init__(self, num_tasks: int, settings: BalancerSettings):
        super().__init__(num_tasks, settings)
        self.current = [1.0] * num_tasks
        self.initial_losses: list[float | None] = [None] * num_tasks
        self.adam = _Adam(num_tasks, settings.balancer_learning_rate)

    def weights(self, losses: Sequence[float]) -> list[float]:
        return list(self.current)

    def observe_gradient_norms(self, norms, losses, present) -> None:
        for t, (loss, seen) in enumerate(zip(losses, present)):
            if seen and self.initial_losses[t] is None:
                self.initial_losses[t] = max(float(loss), _EPS)
        live = [t for t in range(self.num_tasks) if present[t] and self.initial_losses[t] is not None]
        if len(live) < 2:
            return
        ratios = {t: float(losses[t]) / self.initial_losses[t] for t in live}
        mean_ratio = sum(ratios.values()) / len(live)
        weighted = {t: self.current[t] * float(norms[t]) for t in live}
        mean_norm = sum(weighted.values()) / len(live)
        grads = [0.0] * self.num_tasks
        for t in live:  # d|G_t - target_t| / dw_t with the target held constant
            target = mean_norm * (ratios[t] / mean_ratio) ** self.settings.gradnorm_alpha
            grads[t] = math.copysign(float(norms[t]), weighted[t] - target) if weighted[t] != target else 0.0
        stepped = [max(w, 1e-3) for w in self.adam.step(self.current, grads)]
        total = sum(stepped)
        self.current = [self.num_tasks * w / total for w in stepped]


class FAMO(TaskBalancer):
    def __init__(self, num_tasks: int, settings: BalancerSettings):
        super().__init__(num_tasks, settings)
        self.logits = [0.0] * num_tasks
        self.previous: list[float] | None = None  # the last step's losses
        self.min_losses = [0.0] * num_tasks  # cross-entropy is bounded below by 0
        self.adam = _Adam(num_tasks, settings.balancer_learning_rate, weight_decay=settings.famo_weight_decay)

    def _z(self) -> torch.Tensor:
        return torch.softmax(torch.tensor(self.logits, dtype=torch.float64), 0)

    def weights(self, losses: Sequence[float]) -> list[float]:
        """FAMO's gradient sum_t z_t / (c * D_t) * dL_t with c = sum_t z_t / D_t; scaled by T to read like equal."""
        # `previous` holds this batch's losses (observed just before), absent tasks keeping their last one.
        observed = self.previous if self.previous is not None else [float(v) for v in losses]
        z = self._z()
        gaps = torch.tensor(observed, dtype=torch.float64) - torch.tensor(self.min_losses, dtype=torch.float64)
        scaled = z / gaps.clamp_min(_EPS)
        return (self.num_tasks * scaled / scaled.sum()).tolist()

    def observe_losses(self, losses, present) -> None:
        current = [float(v) for v in losses]
        if self.previous is not None:
            delta = [
                (math.log(max(p - m, _EPS)) - math.log(max(c - m, _EPS))) if seen else 0.0
                for p, c, m, seen in zip(self.previous, current, self.min_losses, present)
            ]
            logits = torch.tensor(self.logits, dtype=torch.float64, requires_grad=True)
            (grad,) = torch.autograd.grad(torch.softmax(logits, 0), logits, torch.tensor(delta, dtype=torch.float64))
            self.logits = self.adam.step(self.logits, grad.tolist())
        # A task absent from this batch keeps its last loss (its delta is 0 next time too).
        self.previous = [c if seen else (p if self.previous else c)
                         for c, p, seen in zip(current, self.previous or current, present)]


def make_balancer(method: str, num_tasks: int, settings: BalancerSettings) -> TaskBalancer | None:
    """The stateful balancer for `method` ("dwa", "gradnorm", "famo"), or None for the stateless ones."""
    classes = {"dwa": DynamicWeightAverage, "gradnorm": GradNorm, "famo": FAMO}
    return classes[method](num_tasks, settings) if method in classes else None


def pcgrad(grads: Sequence[torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
    """Sum of the task gradients after PCGrad's projections (each projected on the others' original gradients)."""
    flat = torch.stack([g.reshape(-1).float() for g in grads])
    coefficients = pcgrad_coefficients(flat @ flat.T, generator)
    return (coefficients.to(flat) @ flat).reshape(grads[0].shape).to(grads[0].dtype)


def pcgrad_coefficients(gram: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """a such that PCGrad's sum of projected gradients is sum_j a_j g_j, from the Gram matrix G_ij = <g_i, g_j>.

    A projection g_i <- g_i - <g_i, g_j> / |g_j|^2 g_j keeps g_i a combination c . g of the original gradients,
    and the dot product it needs is c . G[:, j]: the Gram matrix is all PCGrad reads, which is what lets several
    processes run it on the global batch by adding their Gram matrices (`distributed.global_gram`). A common
    factor on G changes nothing. The order of the projections is drawn from `generator` as in the paper."""
    gram = gram.detach().double().cpu()
    total = torch.zeros(len(gram), dtype=torch.float64)
    for i in range(len(gram)):
        c = torch.zeros(len(gram), dtype=torch.float64)
        c[i] = 1.0
        others = [j for j in range(len(gram)) if j != i]
        for k in torch.randperm(len(others), generator=generator).tolist():
            j = others[k]
            dot = c @ gram[:, j]
            if dot < 0:
                c[j] -= dot / gram[j, j].clamp_min(_EPS)
        total += c
    return total


def conflict_stats(names: Sequence[str], grads: Sequence[torch.Tensor | None]) -> dict[str, float]:
    """grad_norm_<task> and grad_cos_<a>_<b> for the tasks with a gradient this step (None: task absent)."""
    stats, flat = {}, {}
    for name, g in zip(names, grads):
        if g is not None:
            flat[name] = g.reshape(-1).float()
            stats[f"grad_norm_{name}"] = float(flat[name].norm())
    keys = list(flat)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            denominator = (flat[a].norm() * flat[b].norm()).clamp_min(_EPS)
            stats[f"grad_cos_{a}_{b}"] = float(torch.dot(flat[a], flat[b]) / denominator)
    return stats


def summarise_conflict(log_history: Sequence[dict]) -> dict:
    """Mean cosine and share of negative-cosine steps per pair, mean norm per task, over the logged steps."""
    pairs: dict[str, list[float]] = {}
    norms: dict[str, list[float]] = {}
    for entry in log_history:
        for key, value in entry.items():
            if key.startswith("grad_cos_"):
                pairs.setdefault(key[len("grad_cos_"):], []).append(value)
            elif key.startswith("grad_norm_"):
                norms.setdefault(key[len("grad_norm_"):], []).append(value)
    if not pairs and not norms:
        return {}
    return {
        "steps_logged": max((len(v) for v in norms.values()), default=0),
        "pairs": {pair: {"mean_cosine": round(sum(v) / len(v), 4),
                         "negative_share": round(sum(c < 0 for c in v) / len(v), 4)} for pair, v in pairs.items()},
        "mean_grad_norm": {task: round(sum(v) / len(v), 6) for task, v in norms.items()},
    }
