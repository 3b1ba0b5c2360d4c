"""Several processes make the update one process makes on the global batch (`distributed.py`).

Fast tests run the reductions in a world of two threads (a batch split in two, `reduce` = a sum over the threads)
against the whole batch; the slow test trains a tiny router under `accelerate launch` with two processes (gloo)
for every method and compares it with one process on the same global batches.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from ticket_router.balancing import pcgrad, pcgrad_coefficients
from ticket_router.distributed import global_gradient, global_gradient_norms, global_gram, global_task_losses
from ticket_router.losses import masked_task_losses, masked_task_sums

REPO = Path(__file__).resolve().parents[1]


class ThreadWorld:
    """`size` ranks as threads; `reduce` sums a tensor over them, like an all-reduce."""

    def __init__(self, size: int):
        self.size, self.barrier, self.slots = size, threading.Barrier(size), [None] * size

    def run(self, fn):
        results = [None] * self.size

        def rank_main(rank):
            def reduce(tensor):
                self.slots[rank] = tensor.detach().clone()
                self.barrier.wait()
                total = torch.stack(self.slots).sum(0)
                self.barrier.wait()
                return total

            results[rank] = fn(rank, reduce)

        threads = [threading.Thread(target=rank_main, args=(rank,)) for rank in range(self.size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results


def _batch(seed=0, rows=10):
    """Logits of two tasks and labels whose labeled rows are uneven between the two halves of the batch."""
    generator = torch.Generator().manual_seed(seed)
    logits = [torch.randn(rows, 3, generator=generator, requires_grad=True),
              torch.randn(rows, 2, generator=generator, requires_grad=True)]
    labels = torch.stack([torch.randint(0, 3, (rows,), generator=generator),
                          torch.randint(0, 2, (rows,), generator=generator)], 1)
    labels[[0, 1, 2, 3, 7], 1] = -100  # task 1: one labeled row in the first half, four in the second
    return logits, labels


def test_global_task_losses_match_the_whole_batch():
    logits, labels = _batch()
    weights = torch.tensor([1.0, 2.0])
    whole, present = masked_task_losses(logits, labels)
    whole_grads = torch.autograd.grad((weights * whole).sum(), logits)

    def rank_main(rank, reduce):
        rows = slice(5 * rank, 5 * rank + 5)
        task = global_task_losses(masked_task_sums([x[rows] for x in logits], labels[rows]), reduce, 2)
        return task, torch.autograd.grad((weights * task.train).sum(), logits)

    results = ThreadWorld(2).run(rank_main)
    for task, _ in results:
        assert torch.allclose(task.values, whole.detach()) and torch.equal(task.present, present)
    averaged = [(a + b) / 2 for a, b in zip(results[0][1], results[1][1])]  # what DDP does with the gradients
    for got, expected in zip(averaged, whole_grads):
        assert torch.allclose(got, expected, atol=1e-6)
    local_means = [masked_task_losses([x[r] for x in logits], labels[r])[0] for r in (slice(0, 5), slice(5, 10))]
    assert not torch.allclose((local_means[0] + local_means[1]) / 2, whole)  # the mean of means would be wrong


def test_a_task_absent_from_one_process_is_present_on_both():
    logits, labels = _batch()
    labels[5:, 1] = -100  # task 1 now only labeled in the first half

    def rank_main(rank, reduce):
        rows = slice(5 * rank, 5 * rank + 5)
        return global_task_losses(masked_task_sums([x[rows] for x in logits], labels[rows]), reduce, 2)

    second = ThreadWorld(2).run(rank_main)[1]
    assert second.present.tolist() == [True, True] and second.train[1] == 0  # a zero loss, still in the graph
    assert second.train[1].requires_grad


def _split_gradients(seed=1):
    """Three task gradients on h (rows x features), h's rows split between two processes."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(6, 4, generator=generator)
    grads = [base, -0.8 * base + 0.3 * torch.randn(6, 4, generator=generator), torch.randn(6, 4, generator=generator)]
    return grads, [[2 * g[:4] for g in grads], [2 * g[4:] for g in grads]]  # x2: world_size times the global mean's


def test_global_gradient_norms_match_the_whole_batch():
    grads, shards = _split_gradients()
    norms = ThreadWorld(2).run(lambda rank, reduce: global_gradient_norms(shards[rank], reduce, 2))
    assert norms[0] == norms[1] and norms[0] == pytest.approx([float(g.norm()) for g in grads], rel=1e-6)
    assert global_gradient_norms(grads, None, 1) == [float(g.norm()) for g in grads]  # one process: no reduce


def test_pcgrad_from_the_summed_gram_matrix_matches_the_whole_batch():
    grads, shards = _split_gradients()
    assert torch.dot(grads[0].reshape(-1), grads[1].reshape(-1)) < 0  # a conflict to project away
    whole = pcgrad(grads, torch.Generator().manual_seed(3))

    def rank_main(rank, reduce):
        coefficients = pcgrad_coefficients(global_gram(shards[rank], reduce, 2), torch.Generator().manual_seed(3))
        return sum(c * g for c, g in zip(coefficients.tolist(), shards[rank]))

    parts = ThreadWorld(2).run(rank_main)
    assert torch.allclose(torch.cat(parts) / 2, whole, atol=1e-6)
    assert not torch.allclose(whole, torch.stack(grads).sum(0))  # PCGrad did change the sum


def test_global_gradient_sums_the_processes_contributions():
    parts = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, -1.0])]
    results = ThreadWorld(2).run(lambda rank, reduce: global_gradient(2 * parts[rank], reduce, 2))
    assert all(torch.equal(r, parts[0] + parts[1]) for r in results)


# --- two processes under accelerate launch -------------------------------------------------------------------------

METHODS = ("equal", "uncertainty", "dwa", "gradnorm", "famo", "pcgrad")


def _tiny_router_inputs(directory: Path) -> tuple[Path, Path]:
    from conftest import make_tiny_backbone, write_csv

    backbone = make_tiny_backbone(directory / "backbone", "distilbert", dropout=0.0)  # dropout would differ by rank
    rng = random.Random(3)
    words = ["printer", "refund", "login", "outage", "invoice", "crash", "urgent", "slow"]
    rows = [{"text": f"n{i} " + " ".join(rng.choice(words) for _ in range(rng.randint(2, 6))),
             "category": rng.choice("abc"),
             "urgency": rng.choice(["low", "high"]) if rng.random() < 0.6 else "",  # partial labels: uneven counts
             "queue": rng.choice(["x", "y"]) if rng.random() < 0.7 else ""} for i in range(40)]
    return backbone, write_csv(directory / "train.csv", rows)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_as_one_on_the_global_batch(tmp_path):
    backbone, train = _tiny_router_inputs(tmp_path)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "ACCELERATE_USE_CPU": "true",
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    worker = [str(REPO / "tests" / "distributed_worker.py"), "--train", str(train), "--backbone", str(backbone)]
    # `accelerate launch --cpu --num_processes 2` starts one process unless MPI is installed; `--multi_gpu` with
    # ACCELERATE_USE_CPU starts two through torch.distributed.run, and the Trainer then trains on CPU with gloo.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port())]
    started = time.perf_counter()
    runs = {"two": subprocess.Popen(launch + worker + ["--output", str(tmp_path / "two"), "--batch-size", "4"],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
            "one": subprocess.Popen([sys.executable, *worker, "--output", str(tmp_path / "one"), "--batch-size", "8"],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)}
    for name, run in runs.items():
        output = run.communicate(timeout=900)[0]
        assert run.returncode == 0, f"{name}: {output[-3000:]}"
    print(f"two-process and one-process runs of {len(METHODS)} methods: {time.perf_counter() - started:.0f} s")
    reference = torch.load(tmp_path / "one" / "equal-rank0.pt")
    for method in METHODS:
        ranks = [json.loads((tmp_path / "two" / f"{method}-rank{k}.json").read_text()) for k in (0, 1)]
        one = json.loads((tmp_path / "one" / f"{method}-rank0.json").read_text())
        assert [r["world_size"] for r in ranks] == [2, 2] and one["world_size"] == 1
        steps = list(zip(ranks[0]["rows_by_step"], ranks[1]["rows_by_step"], one["rows_by_step"]))
        assert len(steps) == 5
        for first, second, whole in steps:
            assert len(first) == len(second) == 4 and not set(first) & set(second), method
            assert sorted(first + second) == sorted(whole), method  # together: one process's global batch
        for key in ("balance_weights", "uncertainty_weights"):
            assert ranks[0][key] == ranks[1][key], (method, key)
            assert ranks[0][key] == pytest.approx(one[key], abs=1e-5), (method, key)
        logged, expected = ([{k: v for k, v in e.items() if k.startswith("grad_")} for e in run["conflict_log"]]
                            for run in (ranks[0], one))
        assert len(logged) == len(expected) == 3  # steps 0, 2, 4
        for got, want in zip(logged, expected):
            assert got == pytest.approx(want, abs=1e-5), method
        trained = [torch.load(tmp_path / "two" / f"{method}-rank{k}.pt") for k in (0, 1)]
        single = torch.load(tmp_path / "one" / f"{method}-rank0.pt")
        for name, tensor in single.items():
            assert torch.equal(trained[0][name], trained[1][name]), (method, name)
            assert torch.allclose(trained[0][name], tensor, atol=1e-5, rtol=0), (method, name)
        if method != "equal":  # the tolerance is far below what each method changes
            assert max((single[n] - reference[n]).abs().max() for n in single) > 2e-5, method
