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
@pytest.mark.parametrize("pooling", [Pooling.CLS, Pooling.MEAN])
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
    assert pooled.tolist() == [[2.0, 2.0]]
