"""Proportional task batch sampling.

With partial labels, plain shuffling lets a rare task vanish from many steps. `ProportionalTaskBatchSampler`
gives every batch a quota of rows per task, drawn from the rows labeled for that task, with task shares
p_t ∝ n_t^(1/T): T=1 follows label counts, a large T approaches uniform. Every task gets at least one row per
batch (when the batch has room), so no head starves. Shares are met in expectation by stochastic rounding of
the fractional quotas; rows drawn for one task still carry all their other labels.

An epoch is ceil(n_labeled_rows / batch_size) batches. Each task's pool is reshuffled whenever it runs out.
Randomness comes from a generator seeded with seed + epoch (`set_epoch`, called by the Trainer), so epochs
differ and runs repeat.

With `lengths`, batches are grouped by length: `group_size` batches are drawn as above, their rows are sorted by
token count and cut back into batches of the same sizes, and those batches are yielded in random order. Padding
then shrinks (on the support-ticket data a random batch of 16 pads to 128 tokens, a grouped one to about 90).
The price: task shares hold over each group of batches rather than in every batch.

Several data-parallel processes (`num_shards` = N > 1): every step's global batch of batch_size x N rows is drawn
exactly as one process with that batch size draws it (same quotas, same rows, no row twice), then dealt out
round-robin into N batches of batch_size, yielded one after the other. The Trainer's accelerate wraps the sampler in
`BatchSamplerShard`, which hands the k-th batch of every N to process k, so the processes' batches of one step are
disjoint and together are the single-process global batch; each process gets floor or ceil of q_t / N rows of a task
whose global quota is q_t (the at-least-one-row guarantee holds per global batch, which is what the global per-task
losses of `distributed.py` read). Every process builds the same sampler with the same seed, so they agree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


def task_shares(label_counts: Sequence[int], temperature: float = 1.0) -> np.ndarray:
    """p_t ∝ n_t^(1/T); tasks without labels get 0."""
    if temperature <= 0:
        raise ValueError(f"sampling temperature must be > 0, got {temperature}")
    counts = np.asarray(label_counts, dtype=np.float64)
    scaled = np.where(counts > 0, counts ** (1.0 / temperature), 0.0)
    return scaled / scaled.sum()


class _Pool:
    """Endless shuffled stream over one task's rows, reshuffled at each pass."""

    def __init__(self, rows: np.ndarray, generator: torch.Generator):
        self.rows, self.generator, self.order, self.position = rows, generator, np.empty(0, np.int64), 0

    def next(self) -> int:
        if self.position >= len(self.order):
            perm = torch.randperm(len(self.rows), generator=self.generator).numpy()
            self.order, self.position = self.rows[perm], 0
        self.position += 1
        return int(self.order[self.position - 1])


class ProportionalTaskBatchSampler(Sampler[list[int]]):
    def __init__(
        self,
        labels: np.ndarray,
        batch_size: int,
        temperature: float = 1.0,
        seed: int = 0,
        lengths: Sequence[int] | None = None,
        group_size: int = 16,
        num_shards: int = 1,
    ):
        """`labels` is the (n_rows, n_tasks) label matrix; a row is labeled for task t when labels[row, t] >= 0.

        `lengths` (token count per row) turns on length grouping over `group_size` batches at a time.
        `num_shards`: data-parallel processes; `batch_size` is then each process's share of a global batch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        if lengths is not None and len(lengths) != len(labels):
            raise ValueError(f"lengths has {len(lengths)} entries for {len(labels)} rows")
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.group_size = group_size
        labeled = np.asarray(labels) >= 0
        self.task_rows = [np.flatnonzero(labeled[:, t]) for t in range(labeled.shape[1])]
        self.shares = task_shares([len(rows) for rows in self.task_rows], temperature)
        self.num_labeled_rows = int(labeled.any(axis=1).sum())
        if self.num_labeled_rows == 0:
            raise ValueError("no training row has a label for any task")
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self.num_shards, self.global_batch_size = num_shards, batch_size * num_shards

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_shards * self._num_global_batches()

    def _num_global_batches(self) -> int:
        return math.ceil(self.num_labeled_rows / self.global_batch_size)

    def quotas(self, generator: torch.Generator) -> np.ndarray:
        """Rows per task for one global batch: floor(B p_t), at least 1, remainder by stochastic rounding."""
        active = self.shares > 0
        exact = self.global_batch_size * self.shares
        quota = np.floor(exact).astype(np.int64)
        if self.global_batch_size >= active.sum():
            quota[active] = np.maximum(quota[active], 1)
        missing = self.global_batch_size - int(quota.sum())
        while missing < 0:  # the at-least-one bump overshot a tiny batch: take rows back from the largest quota
            quota[int(quota.argmax())] -= 1
            missing += 1
        if missing > 0:
            remainder = torch.tensor(np.clip(exact - np.floor(exact), 0, None) + 1e-12 * active)
            picks = torch.multinomial(remainder, missing, replacement=False, generator=generator).numpy()
            quota[picks] += 1
        return quota

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._global_batches():
            if self.num_shards > 1 and len(batch) < self.global_batch_size:
                logger.warning("A global batch has %d of its %d rows (too few distinct labeled rows): accelerate "
                               "skips the step, whose last process's batch is short", len(batch), self.global_batch_size)
            # Round-robin over a batch drawn task by task: each shard gets an even share of every task's quota.
            for shard in range(self.num_shards):
                yield batch[shard::self.num_shards]

    def _global_batches(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        batches = self._draw_batches(generator)
        if self.lengths is None:
            yield from batches
            return
        batches = list(batches)
        for start in range(0, len(batches), self.group_size):
            yield from self._group_by_length(batches[start:start + self.group_size], generator)

    def _group_by_length(self, group: list[list[int]], generator: torch.Generator) -> list[list[int]]:
        rows = [row for batch in group for row in batch]
        rows.sort(key=lambda row: -int(self.lengths[row]))  # stable: ties keep their random draw order
        regrouped, start = [], 0
        for batch in group:
            regrouped.append(rows[start:start + len(batch)])
            start += len(batch)
        order = torch.randperm(len(regrouped), generator=generator).tolist()
        return [regrouped[i] for i in order]

    def _draw_batches(self, generator: torch.Generator) -> Iterator[list[int]]:
        pools = [_Pool(rows, generator) for rows in self.task_rows]
        for _ in range(self._num_global_batches()):
            batch: list[int] = []
            chosen: set[int] = set()
            for t, count in enumerate(self.quotas(generator)):
                # Skip rows already drawn for another task; a bounded number of tries keeps tiny pools safe.
                for _ in range(int(count)):
                    for _attempt in range(len(self.task_rows[t])):
                        row = pools[t].next()
                        if row not in chosen:
                            chosen.add(row)
                            batch.append(row)
                            break
            yield batch
