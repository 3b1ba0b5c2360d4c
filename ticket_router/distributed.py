"""What data-parallel processes add up so that N processes make the update one process makes on the global batch.

Under `accelerate launch` (DDP) every process computes a loss on its own batch and the parameter gradients are
averaged over the processes. That average is the single-process gradient on the global batch (all processes'
batches together) only where nothing mixes rows of different processes. The multi-task loss mixes them in four
places, and each gets the cheapest exact reduction:

- a task's masked mean loss: per-task sums of w[y] * nll, of w[y] and of labeled rows are added over processes
  before dividing (3T floats per step). A mean of per-process means is wrong when a task's label count differs by
  process, and the balancers (DWA, FAMO, GradNorm) and uncertainty's s_t / 2 term need the global losses and the
  global "task present" so that every process keeps the same weights;
- GradNorm's per-task gradient norm on the encoder output h: h's rows are split across processes, so the squared
  norms of the slices add up (T floats);
- PCGrad: every projection keeps a task gradient a linear combination of the original ones, with coefficients
  that depend on their dot products only, so the T x T Gram matrix summed over processes is enough (T^2 floats);
  each process then combines its own slices with the shared coefficients;
- the conflict log's per-task gradients on the encoder parameters: each is a sum over processes (every process's
  rows move every parameter), and their cosines need the summed vectors (T vectors of the encoder's size, only at
  the logged steps).

Each function takes `reduce` (a sum over processes) and `world_size`; with one process nothing is reduced and
the arithmetic is the single-process one. Tests call them on the shards of a batch with a fake `reduce`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .losses import TaskLossSums

Reduce = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class GlobalTaskLosses:
    """One process's view of the global batch's per-task losses.

    `train` carries the gradient: world_size * (this process's sum) / (global weight), so that DDP's average over
    processes gives the gradient of the global mean. `values` are the global means (detached, the same on every
    process), for balancers and logs; `present` says which tasks have a labeled row anywhere in the global batch.
    """

    train: torch.Tensor
    values: torch.Tensor
    present: torch.Tensor


def global_task_losses(sums: TaskLossSums, reduce: Reduce, world_size: int) -> GlobalTaskLosses:
    if world_size == 1:
        losses = sums.means()
        return GlobalTaskLosses(losses, losses.detach(), sums.count > 0)
    tasks = len(sums.count)
    total = reduce(torch.cat([sums.nll.detach(), sums.weight, sums.count]))  # one all-reduce of 3T floats
    nll, weight, count = total[:tasks], total[tasks:2 * tasks].clamp_min(1e-12), total[2 * tasks:]
    return GlobalTaskLosses(world_size * sums.nll / weight, nll / weight, count > 0)


def global_gradient_norms(grads: Sequence[torch.Tensor], reduce: Reduce, world_size: int) -> list[float]:
    """||dL_t/dh|| over the global batch, from each process's slice of h's gradient (of `GlobalTaskLosses.train`,
    which is world_size times the global mean's: the factor is taken out)."""
    norms = torch.stack([g.norm() for g in grads])
    if world_size == 1:
        return norms.tolist()
    return (reduce(norms.float().square()).sqrt() / world_size).tolist()


def global_gram(grads: Sequence[torch.Tensor], reduce: Reduce, world_size: int) -> torch.Tensor:
    """G_ij = <g_i, g_j> of the task gradients over the global batch (up to a common factor, which PCGrad ignores)."""
    flat = torch.stack([g.reshape(-1).float() for g in grads])
    gram = flat @ flat.T
    return reduce(gram) if world_size > 1 else gram


def global_gradient(vector: torch.Tensor, reduce: Reduce, world_size: int) -> torch.Tensor:
    """A gradient over the global batch from each process's (of `GlobalTaskLosses.train`, factor taken out)."""
    return reduce(vector) / world_size if world_size > 1 else vector
