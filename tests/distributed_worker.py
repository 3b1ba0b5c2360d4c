"""One training per method through `train_router`, writing this process's evidence; run by tests/test_distributed.py.

Under `accelerate launch --num_processes 2` each process writes, per method, `<method>-rank<k>.json` (the dataset
rows of every step's batch, the balancer and uncertainty weights, the conflict log) and `<method>-rank<k>.pt` (the
trained parameters); run as a plain script it is the single-process reference at twice the batch size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ticket_router import training
from ticket_router.config import TrainConfig
from ticket_router.trainer import MultiTaskTrainer

METHODS = {
    "equal": {"loss_weighting": "equal"},
    "uncertainty": {"loss_weighting": "uncertainty"},
    "dwa": {"loss_weighting": "dwa", "dwa_window_steps": 1},
    "gradnorm": {"loss_weighting": "gradnorm"},
    "famo": {"loss_weighting": "famo"},
    "pcgrad": {"loss_weighting": "uncertainty", "gradient_surgery": "pcgrad"},
}


class RecordingTrainer(MultiTaskTrainer):
    """Notes the dataset rows of each batch this process's training loader yields (accelerate's shard of them)."""

    latest: "RecordingTrainer | None" = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[list[int]] = []
        RecordingTrainer.latest = self

    def get_train_dataloader(self):
        loader = super().get_train_dataloader()
        shard = loader.batch_sampler  # accelerate's BatchSamplerShard, or the sampler itself with one process
        recorded = self.batches

        def recording_iter(sampler):
            for batch in type(sampler).__mro__[1].__iter__(sampler):
                recorded.append(list(batch))
                yield batch

        shard.__class__ = type(f"Recording{type(shard).__name__}", (type(shard),), {"__iter__": recording_iter})
        return loader


def evidence(trainer: RecordingTrainer) -> dict:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {
        "rank": trainer.accelerator.process_index,
        "world_size": trainer.accelerator.num_processes,
        "rows_by_step": trainer.batches[:trainer.state.global_step],  # the loader reads one batch ahead
        "balance_weights": trainer._balance_weights.tolist(),
        "uncertainty_weights": torch.exp(-model.log_vars.detach()).tolist(),
        "conflict_log": [e for e in trainer.state.log_history if any(k.startswith("grad_cos_") for k in e)],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--output", required=True, help="evidence and model directories go here")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    training.MultiTaskTrainer = RecordingTrainer  # train_router builds its trainer by this name
    out = Path(args.output)
    for method in args.methods.split(","):
        config = TrainConfig(
            train=args.train, backbone=args.backbone, output=str(out / f"model-{method}"),
            tasks={"category": "category", "urgency": "urgency", "queue": "queue"},
            batch_size=args.batch_size, max_steps=args.steps, learning_rate=1e-3, warmup_ratio=0.0, dropout=0.0,
            pooling="mean", lexical_weight=0.0, logging_steps=1, gradient_conflict_steps=2, seed=7,
            balancer_learning_rate=0.1, **METHODS[method],
        )
        training.train_router(config)
        trainer = RecordingTrainer.latest
        rank = trainer.accelerator.process_index
        (out / f"{method}-rank{rank}.json").write_text(json.dumps(evidence(trainer)) + "\n")
        state = trainer.accelerator.unwrap_model(trainer.model).state_dict()
        torch.save({name: tensor.detach().cpu() for name, tensor in state.items()}, out / f"{method}-rank{rank}.pt")
        trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
