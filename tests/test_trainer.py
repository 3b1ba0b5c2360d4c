import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer, DataCollatorWithPadding

from ticket_router.data import tokenize_dataset
from ticket_router.modeling import MultiTaskRouterModel
from ticket_router.tasks import TaskSpec
from ticket_router.trainer import MultiTaskTrainer
from ticket_router.training_args import Precision, RouterTrainingArguments

SPECS = [TaskSpec("category", "c", ["a", "b", "c"]), TaskSpec("queue", "q", ["x", "y"])]


def _dataset(tokenizer, n=48, seed=0):
    rng = np.random.default_rng(seed)
    words = ["printer", "refund", "login", "outage", "invoice", "crash"]
    texts = [" ".join(rng.choice(words, 5)) for _ in range(n)]
    labels = np.stack([rng.integers(0, 3, n), rng.integers(0, 2, n)], axis=1)
    labels[rng.random(n) < 0.4, 1] = -100  # partial labels for the queue task
    return tokenize_dataset(texts, labels, tokenizer, max_length=16)


def _trainer(backbone, tmp_path, **overrides):
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    model = MultiTaskRouterModel.from_backbone(AutoModel.from_pretrained(backbone), SPECS, ["text"])
    options = dict(output_dir=str(tmp_path / "out"), max_steps=12, per_device_train_batch_size=8, learning_rate=1e-3,
                   logging_steps=4, report_to="none", save_strategy="no", seed=0, weight_decay=0.1)
    options.update(overrides)
    args = RouterTrainingArguments(**options)
    return MultiTaskTrainer(model=model, args=args, train_dataset=_dataset(tokenizer),
                            data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)


def test_uncertainty_log_vars_are_optimised_without_weight_decay(distilbert_dir, tmp_path):
    trainer = _trainer(distilbert_dir, tmp_path, loss_weighting="uncertainty")
    trainer.train()
    log_vars = trainer.model.log_vars
    assert not torch.equal(log_vars.detach(), torch.zeros_like(log_vars)), "log-variances never trained"
    groups = [g for g in trainer.optimizer.param_groups if any(p is log_vars for p in g["params"])]
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0


def test_log_history_carries_per_task_loss_and_weight(distilbert_dir, tmp_path):
    trainer = _trainer(distilbert_dir, tmp_path, loss_weighting="uncertainty")
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged
    for key in ("loss_category", "loss_queue", "weight_category", "weight_queue"):
        assert key in logged[-1], key
    assert logged[-1]["weight_category"] == pytest.approx(float(torch.exp(-trainer.model.log_vars[0].detach())), abs=1e-3)


def test_uncertainty_warmup_keeps_equal_weights(distilbert_dir, tmp_path):
    trainer = _trainer(distilbert_dir, tmp_path, loss_weighting="uncertainty", uncertainty_warmup_steps=100)
    trainer.train()
    assert torch.equal(trainer.model.log_vars.detach(), torch.zeros(2))


def test_encoder_frozen_for_first_steps(distilbert_dir, tmp_path):
    trainer = _trainer(distilbert_dir, tmp_path, freeze_encoder_steps=12, loss_weighting="equal")
    encoder_before = {k: v.clone() for k, v in trainer.model.encoder.state_dict().items()}
    heads_before = [h.weight.detach().clone() for h in trainer.model.heads]
    trainer.train()
    for name, tensor in trainer.model.encoder.state_dict().items():
        assert torch.equal(tensor, encoder_before[name]), name
    assert not torch.equal(trainer.model.heads[0].weight, heads_before[0])


def test_head_learning_rate_group(distilbert_dir, tmp_path):
    trainer = _trainer(distilbert_dir, tmp_path, head_learning_rate=5e-3, max_steps=1)
    trainer.create_optimizer()
    head_param = trainer.model.heads[0].weight
    lrs = {g["lr"] for g in trainer.optimizer.param_groups}
    assert lrs == {1e-3, 5e-3}
    assert [g["lr"] for g in trainer.optimizer.param_groups if any(p is head_param for p in g["params"])] == [5e-3]


def test_random_sampling_and_fixed_weights_train(distilbert_dir, tmp_path):
    trainer = _trainer(distilbert_dir, tmp_path, sampling="random", loss_weighting="fixed",
                       task_weights={"queue": 2.0}, max_steps=3)
    trainer.train()
    assert trainer.task_weights_now() == {"category": 1.0, "queue": 2.0}


def test_unknown_task_weight_is_refused(distilbert_dir, tmp_path):
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['qeue'\]"):
        _trainer(distilbert_dir, tmp_path, loss_weighting="fixed", task_weights={"qeue": 2.0})


def test_log_vars_saved_in_checkpoints(distilbert_dir, tmp_path):
    trainer = _trainer(distilbert_dir, tmp_path, save_strategy="steps", save_steps=12)
    trainer.train()
    state = load_file(str(tmp_path / "out" / "checkpoint-12" / "model.safetensors"))
    assert torch.equal(state["log_vars"], trainer.model.log_vars.detach())


def test_precision_auto_is_fp32_on_cpu(tmp_path):
    args = RouterTrainingArguments(output_dir=str(tmp_path), report_to="none")
    if not torch.cuda.is_available():
        assert args.precision is Precision.AUTO and not args.bf16 and not args.fp16


@pytest.mark.parametrize("field, value", [("loss_weighting", "kendall"), ("sampling", "stratified"),
                                          ("precision", "fp8"), ("sampling_temperature", 0.0)])
def test_bad_values_are_named(tmp_path, field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        RouterTrainingArguments(output_dir=str(tmp_path), report_to="none", **{field: value})
