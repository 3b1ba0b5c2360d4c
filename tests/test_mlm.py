"""`mlm.MaskedTokensTrainer`: the loss from the masked positions alone equals the model's own MLM loss."""

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling, TrainingArguments

from ticket_router.mlm import MaskedTokensTrainer, vocabulary_head

TEXTS = ["printer jams on tray two", "refund the double charge please", "locked out"]


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_masked_positions_loss_equals_the_models_own(kind, bert_dir, distilbert_dir, tmp_path):
    directory = bert_dir if kind == "bert" else distilbert_dir
    model, tokenizer = AutoModelForMaskedLM.from_pretrained(directory).eval(), AutoTokenizer.from_pretrained(directory)
    assert vocabulary_head(model) is not None  # else the faster path is silently skipped
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.5, seed=0)
    batch = collator([dict(tokenizer(t, return_special_tokens_mask=True)) for t in TEXTS])
    assert (batch["labels"] != -100).sum() > 0
    trainer = MaskedTokensTrainer(model=model, args=TrainingArguments(str(tmp_path), report_to="none"))
    with torch.no_grad():
        own = model(**batch).loss
        loss, outputs = trainer.compute_loss(model, dict(batch), return_outputs=True)
    assert torch.allclose(loss, own, atol=1e-5) and outputs["loss"] is loss
