import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from ticket_router.modeling import MultiTaskRouterModel, Pooling
from ticket_router.tasks import TaskSpec

SPECS = [TaskSpec("type", "a", ["x", "y"]), TaskSpec("train", "b", ["1", "2", "3"], "int"), TaskSpec("id", "c", ["p", "q"])]


def _router(backbone_dir, pooling=Pooling.CLS):
    encoder = AutoModel.from_pretrained(backbone_dir)
    pretrained = {k: v.clone() for k, v in encoder.state_dict().items()}
    model = MultiTaskRouterModel.from_backbone(encoder, SPECS, ["subject", "body"], pooling=pooling, max_length=32)
    return model, pretrained


@pytest.mark.parametrize("kind", ["distilbert_dir", "bert_dir"])
@pytest.mark.parametrize("pooling", [Pooling.CLS, Pooling.MEAN, Pooling.ATTENTION])
def test_save_load_gives_identical_logits(kind, pooling, request, tmp_path):
    backbone = request.getfixturevalue(kind)
    model, pretrained = _router(backbone, pooling)
    for name, tensor in model.encoder.state_dict().items():
        assert torch.equal(tensor, pretrained[name]), f"pretrained weight {name} was re-initialised"
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    batch = tokenizer(["printer on fire", "refund please now"], padding=True, return_tensors="pt")
    if kind == "distilbert_dir":
        assert "token_type_ids" not in batch  # DistilBERT has none: nothing may assume them
    model.eval()
    with torch.no_grad():
        before = model(**batch).logits
    model.save_pretrained(tmp_path)
    loaded = MultiTaskRouterModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        after = loaded(**batch).logits
    assert [t.shape for t in before] == [(2, 2), (2, 3), (2, 2)]
    for a, b in zip(before, after):
        assert torch.equal(a, b)
    assert [s.name for s in loaded.config.task_specs()] == ["type", "train", "id"]
    assert loaded.config.pooling == pooling.value


def test_forward_with_labels_gives_masked_equal_loss(distilbert_dir):
    model, _ = _router(distilbert_dir)
    ids = torch.randint(5, 80, (3, 6))
    labels = torch.tensor([[0, -100, 1], [1, 2, -100], [-100, -100, -100]])
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
    assert torch.isfinite(out.loss)


def test_mean_pooling_ignores_padding(bert_dir):
    model, _ = _router(bert_dir, Pooling.MEAN)
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    pooled = model.pool(hidden, torch.tensor([[1, 1, 0]]))
    assert [vector.tolist() for vector in pooled] == [[[2.0, 2.0]]] * len(SPECS)


def test_attention_pooling_starts_as_mean_then_each_task_weighs_its_own_tokens(bert_dir):
    model, _ = _router(bert_dir, Pooling.ATTENTION)
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    model.token_scorers = torch.nn.ModuleList(torch.nn.Linear(2, 1) for _ in SPECS)
    for scorer in model.token_scorers:  # zero scores, as initialised: the masked mean
        torch.nn.init.zeros_(scorer.weight), torch.nn.init.zeros_(scorer.bias)
    assert [v.tolist() for v in model.pool(hidden, mask)] == [[[2.0, 1.0]]] * len(SPECS)
    with torch.no_grad():
        model.token_scorers[0].weight[:] = torch.tensor([[50.0, 0.0]])  # task 0 looks at the second token
        model.token_scorers[1].weight[:] = torch.tensor([[-50.0, 0.0]])  # task 1 at the first
    pooled = model.pool(hidden, mask)
    assert torch.allclose(pooled[0], torch.tensor([[3.0, 2.0]]))
    assert torch.allclose(pooled[1], torch.tensor([[1.0, 0.0]]))
    assert torch.allclose(pooled[2], torch.tensor([[2.0, 1.0]]))  # padding never gets weight


def test_attention_scorers_are_initialised_to_zero(bert_dir):
    model, _ = _router(bert_dir, Pooling.ATTENTION)
    assert all(torch.count_nonzero(scorer.weight) == 0 for scorer in model.token_scorers)
    assert _router(bert_dir, Pooling.MEAN)[0].token_scorers is None
