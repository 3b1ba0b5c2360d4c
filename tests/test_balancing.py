"""Multi-task balancing (issue 12): DWA / GradNorm / FAMO weights, PCGrad, the gradient-conflict log, checkpoints."""

import json

import pytest
import torch

from ticket_router.balancing import (
    FAMO,
    BalancerSettings,
    DynamicWeightAverage,
    GradNorm,
    conflict_stats,
    pcgrad,
    summarise_conflict,
)
from ticket_router.training_curves import draw_training_curves

from test_trainer import _trainer


def _stalling_losses(steps: int):
    """Task 0's loss falls steadily, task 1's stalls: the balancers must move weight to task 1."""
    for step in range(steps):
        yield [2.0 * 0.97**step, 1.5]


def test_dwa_gives_the_stalling_task_more_weight():
    balancer = DynamicWeightAverage(2, BalancerSettings(dwa_window_steps=5, dwa_temperature=1.0))
    for losses in _stalling_losses(30):
        balancer.observe_losses(losses, [True, True])
    weights = balancer.weights([1.0, 1.5])
    assert weights[1] > weights[0] and sum(weights) == pytest.approx(2.0)


def test_gradnorm_gives_the_stalling_task_more_weight():
    balancer = GradNorm(2, BalancerSettings(gradnorm_alpha=1.5, balancer_learning_rate=0.05))
    for losses in _stalling_losses(40):
        balancer.observe_gradient_norms([1.0, 1.0], losses, [True, True])  # equal raw gradient norms
    weights = balancer.weights([0.0, 0.0])
    assert weights[1] > 1.2 > 0.8 > weights[0] and sum(weights) == pytest.approx(2.0)


def test_gradnorm_evens_out_gradient_magnitudes():
    """With equal loss ratios (alpha irrelevant), a task whose gradient is 10x smaller is weighted up."""
    balancer = GradNorm(2, BalancerSettings(balancer_learning_rate=0.05))
    for _ in range(200):
        balancer.observe_gradient_norms([10.0, 1.0], [1.0, 1.0], [True, True])
    weights = balancer.weights([1.0, 1.0])
    assert weights[1] / weights[0] > 5


def test_famo_gives_the_stalling_task_more_weight():
    balancer = FAMO(2, BalancerSettings(balancer_learning_rate=0.05))
    for losses in _stalling_losses(60):
        balancer.observe_losses(losses, [True, True])
    z = balancer._z()
    assert z[1] > z[0]
    # Multipliers z_t / (c * L_t): larger for the stalling task, and they sum to T.
    weights = balancer.weights([2.0 * 0.97**59, 1.5])
    assert weights[1] > weights[0] and sum(weights) == pytest.approx(2.0)


def test_balancer_state_round_trips_through_json():
    balancer = FAMO(2, BalancerSettings())
    for losses in _stalling_losses(5):
        balancer.observe_losses(losses, [True, True])
    restored = FAMO(2, BalancerSettings())
    restored.load_state_dict(json.loads(json.dumps(balancer.state_dict())))
    assert restored.logits == balancer.logits and restored.adam.state_dict() == balancer.adam.state_dict()
    assert restored.weights([1.0, 1.0]) == balancer.weights([1.0, 1.0])


def test_pcgrad_removes_the_conflicting_component():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # dot < 0: they conflict
    combined = pcgrad([a, b], torch.Generator().manual_seed(0))
    # a loses its component along b: a - (a.b/|b|^2) b = [0.5, 0.5]; b loses its along a: [0, 1].
    assert torch.allclose(combined, torch.tensor([0.5, 1.5]))
    assert torch.dot(combined, a) >= 0 and torch.dot(combined, b) >= 0
    c = torch.tensor([1.0, 1.0])  # agreeing gradients are left alone
    assert torch.allclose(pcgrad([a, c]), a + c)


def test_conflict_stats_and_summary():
    stats = conflict_stats(["x", "y", "z"], [torch.tensor([1.0, 0.0]), torch.tensor([-2.0, 0.0]), None])
    assert stats == {"grad_norm_x": 1.0, "grad_norm_y": 2.0, "grad_cos_x_y": pytest.approx(-1.0)}
    summary = summarise_conflict([{"step": 0, **stats}, {"step": 5, "grad_cos_x_y": 0.5, "grad_norm_x": 3.0}])
    assert summary["pairs"]["x_y"] == {"mean_cosine": -0.25, "negative_share": 0.5}
    assert summary["mean_grad_norm"]["x"] == 2.0


@pytest.mark.parametrize("every", [4, 0])
def test_conflict_log_appears_at_the_set_interval_only(distilbert_dir, tmp_path, every):
    trainer = _trainer(distilbert_dir, tmp_path, gradient_conflict_steps=every, max_steps=9)
    trainer.train()
    steps = [entry["step"] for entry in trainer.state.log_history if "grad_cos_category_queue" in entry]
    assert steps == ([0, 4, 8] if every else [])
    if every:
        entry = next(e for e in trainer.state.log_history if "grad_norm_queue" in e)
        assert entry["grad_norm_category"] > 0 and -1 <= entry["grad_cos_category_queue"] <= 1
        share = trainer.conflict_summary(10.0)["pairs"]["category_queue"]["negative_share"]
        assert share == pytest.approx(round(share * 3) / 3, abs=1e-3)  # a share of 3 logged steps
        assert draw_training_curves(trainer.state.log_history, tmp_path / "curves.png").stat().st_size > 1000


@pytest.mark.parametrize("method", [{"loss_weighting": "gradnorm"}, {"loss_weighting": "famo"},
                                    {"loss_weighting": "dwa", "dwa_window_steps": 1},
                                    {"loss_weighting": "uncertainty", "gradient_surgery": "pcgrad"}])
def test_each_method_trains_and_moves_its_weights(distilbert_dir, tmp_path, method):
    trainer = _trainer(distilbert_dir, tmp_path, gradient_conflict_steps=0, max_steps=4, logging_steps=2, **method)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    moved = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert any(n.startswith("encoder.") for n in moved) and any(n.startswith("heads.") for n in moved)
    if trainer.balancer is not None:
        assert trainer._balance_weights.tolist() != [1.0, 1.0]
    logged = [e for e in trainer.state.log_history if "weight_queue" in e]
    assert logged and all(torch.isfinite(torch.tensor(e["loss"])) for e in logged)


def test_pcgrad_surrogate_sends_the_encoder_the_plain_sum_when_nothing_conflicts(distilbert_dir, tmp_path):
    """Split at the encoder output without surgery (GradNorm's path with frozen equal weights) = ordinary backward."""
    trainer = _trainer(distilbert_dir, tmp_path, loss_weighting="equal", gradient_conflict_steps=0)
    model = trainer.model
    for module in model.modules():  # no dropout: both passes must see the same network
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    batch = next(iter(trainer.get_train_dataloader()))
    grads = []
    for split in (False, True):
        model.zero_grad()
        trainer._split_at_encoder = lambda split=split: split
        trainer.compute_loss(model, dict(batch)).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name


def test_checkpoints_carry_the_balancer_state(distilbert_dir, tmp_path):
    trainer = _trainer(distilbert_dir, tmp_path, loss_weighting="famo", save_strategy="steps", save_steps=3,
                       gradient_conflict_steps=0, max_steps=3)
    trainer.train()
    saved = json.loads((tmp_path / "out" / "checkpoint-3" / "balancer.json").read_text())
    assert saved["balancer"]["logits"] != [0.0, 0.0]
    resumed = _trainer(distilbert_dir, tmp_path, loss_weighting="famo", save_strategy="no", gradient_conflict_steps=0)
    resumed.load_balancer_state(tmp_path / "out" / "checkpoint-3")
    assert resumed.balancer.logits == saved["balancer"]["logits"]


@pytest.mark.parametrize("kind", ["distilbert", "bert"])
def test_task_specific_layers_round_trip(kind, request, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from ticket_router.modeling import MultiTaskRouterModel, _layer_stack
    from ticket_router.tasks import TaskSpec

    backbone = request.getfixturevalue(f"{kind}_dir")
    specs = [TaskSpec("category", "c", ["a", "b", "c"]), TaskSpec("queue", "q", ["x", "y"])]
    model = MultiTaskRouterModel.branched_from_backbone(AutoModel.from_pretrained(backbone), specs, 1,
                                                       text_columns=["text"], pooling="mean").eval()
    plain = AutoModel.from_pretrained(backbone)
    assert len(_layer_stack(model.encoder)) == 1 and len(model.task_layers) == 2
    # Each branch starts as the pretrained top layer: before training the router reads the plain encoder's output.
    assert torch.equal(model.task_layers[1][0].state_dict()[next(iter(_layer_stack(plain)[1].state_dict()))],
                       next(iter(_layer_stack(plain)[1].state_dict().values())))
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    batch = tokenizer(["printer on fire", "refund please now"], padding=True, return_tensors="pt")
    batch.pop("token_type_ids", None)
    with torch.no_grad():
        hidden = plain.eval()(**batch).last_hidden_state
        logits = model(**batch).logits
        model.save_pretrained(tmp_path / "router")
        loaded = MultiTaskRouterModel.from_pretrained(tmp_path / "router").eval()
        again = loaded(**batch).logits
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = model.heads[0]((hidden * mask).sum(1) / mask.sum(1))
    assert torch.allclose(logits[0], expected, atol=1e-5)  # the branch reproduces the full encoder
    for a, b in zip(logits, again):
        assert torch.equal(a, b)


@pytest.mark.parametrize("field, value, message", [
    ("gradient_surgery", "mgda", "gradient_surgery='mgda' is not valid"),
    ("gradient_conflict_steps", -1, "must be >= 0"),
    ("uncertainty_weight_floor", 1.0, "must be < 1"),
    ("dwa_temperature", 0.0, "must be > 0"),
    ("gradnorm_alpha", -0.5, "must be >= 0"),
])
def test_balancing_arguments_are_checked(tmp_path, field, value, message):
    from ticket_router.training_args import RouterTrainingArguments

    with pytest.raises(ValueError, match=message):
        RouterTrainingArguments(output_dir=str(tmp_path), report_to="none", **{field: value})


def test_uncertainty_weight_floor_caps_the_log_variance():
    from ticket_router.losses import LossWeighting, combine_task_losses, effective_weights

    log_vars = torch.tensor([0.0, 2.0], requires_grad=True)  # the second task's weight exp(-2) = 0.135
    losses, present = torch.tensor([1.0, 3.0]), torch.tensor([True, True])
    assert effective_weights(LossWeighting.UNCERTAINTY, 2, log_vars, None, weight_floor=0.5)[1] == pytest.approx(0.5)
    combine_task_losses(losses, present, LossWeighting.UNCERTAINTY, log_vars, weight_floor=0.5).backward()
    assert log_vars.grad[1] == 0  # capped: no longer pushed further down
