import math

import pytest
import torch

from ticket_router.losses import (
    LossWeighting, combine_task_losses, inverse_frequency_weights, masked_task_losses,
)

IGN = -100


def _ce(logits, target):
    """Cross-entropy of one row by hand: -log softmax."""
    return -(logits[target] - math.log(sum(math.exp(v) for v in logits)))


def test_masked_loss_matches_hand_computation_and_absent_task_is_exact_zero():
    a = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    b = torch.tensor([[0.5, 0.1, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]], requires_grad=True)
    labels = torch.tensor([[0, IGN], [IGN, IGN], [1, IGN]])
    losses, present = masked_task_losses((a, b), labels)
    expected_a = (_ce([2.0, 0.0], 0) + _ce([1.0, 1.0], 1)) / 2
    assert losses[0].item() == pytest.approx(expected_a, rel=1e-6)
    assert losses[1].item() == 0.0 and not torch.isnan(losses).any()
    assert present.tolist() == [True, False]
    losses.sum().backward()
    assert torch.equal(b.grad, torch.zeros_like(b))  # attached, but exactly zero
    assert a.grad[1].abs().sum() == 0  # the unlabeled row gives no gradient


def test_unseen_labels_are_masked_out_of_the_loss():
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    losses, _ = masked_task_losses((logits,), torch.tensor([[0], [-1]]))
    assert losses[0].item() == pytest.approx(_ce([1.0, 0.0], 0))


def test_class_weights_follow_torch_weighted_mean():
    logits = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    labels = torch.tensor([[0], [1], [1]])
    weights = torch.tensor([3.0, 1.0])
    losses, _ = masked_task_losses((logits,), labels, [weights])
    hand = (3 * _ce([1.0, 0.0], 0) + _ce([0.0, 2.0], 1) + _ce([0.5, 0.5], 1)) / (3 + 1 + 1)
    assert losses[0].item() == pytest.approx(hand, rel=1e-6)


def test_inverse_frequency_weights():
    assert inverse_frequency_weights([30, 10, 0]).tolist() == pytest.approx([40 / 60, 40 / 20, 0.0])


def test_combine_equal_fixed_uncertainty():
    losses = torch.tensor([1.0, 2.0, 4.0])
    present = torch.tensor([True, True, False])
    assert combine_task_losses(losses, present, LossWeighting.EQUAL).item() == 7.0
    fixed = combine_task_losses(losses, present, LossWeighting.FIXED, fixed_weights=torch.tensor([1.0, 0.5, 2.0]))
    assert fixed.item() == 10.0
    log_vars = torch.tensor([0.0, math.log(2.0), 5.0])
    # absent task adds nothing, not even its log-variance term
    expected = 1.0 + (2.0 / 2.0 + 0.5 * math.log(2.0))
    assert combine_task_losses(losses, present, LossWeighting.UNCERTAINTY, log_vars).item() == pytest.approx(expected)


def test_uncertainty_weights_move_towards_lower_weight_for_the_larger_loss():
    log_vars = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.SGD([log_vars], lr=0.05)
    losses = torch.tensor([0.05, 5.0])  # task 1's loss is 100x task 0's
    for _ in range(300):
        optimizer.zero_grad()
        combine_task_losses(losses, torch.tensor([True, True]), LossWeighting.UNCERTAINTY, log_vars).backward()
        optimizer.step()
    weights = torch.exp(-log_vars.detach())
    assert weights[0] > 1.0 > weights[1]
    assert weights[0] / weights[1] > 20
    # the optimum is s_t = log(2 L_t)
    assert log_vars[1].item() == pytest.approx(math.log(10.0), abs=0.05)


def test_masked_losses_never_read_values_back_to_the_host():
    # Meta tensors have shapes but no values: `bool(mask.any())`, `.item()` or a boolean index (whose output shape
    # depends on the values) raise on them. On a GPU each such read stalls the step, so none may be in the loss.
    logits = [torch.randn(4, 3, device="meta", requires_grad=True), torch.randn(4, 2, device="meta")]
    labels = torch.empty(4, 2, dtype=torch.long, device="meta")
    losses, present = masked_task_losses(logits, labels, [torch.ones(3), None])
    combined = combine_task_losses(losses, present, LossWeighting.UNCERTAINTY, torch.zeros(2, device="meta"))
    assert losses.shape == (2,) and present.dtype == torch.bool and combined.shape == ()
