"""Masked-language-model training that scores the vocabulary at the masked positions only.

The model's own MLM loss projects every token onto the vocabulary; on MiniLM (384 hidden, 30522 words) that
projection is about half the compute per token, while only the masked 15% of the tokens carry a label.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, Trainer


def vocabulary_head(model: PreTrainedModel) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The MLM head as a function of hidden states, for the families whose head is separate from the encoder."""
    if hasattr(model, "cls"):  # BERT family (MiniLM)
        return model.cls
    if hasattr(model, "lm_head"):  # RoBERTa family
        return model.lm_head
    if hasattr(model, "vocab_projector"):  # DistilBERT
        return lambda hidden: model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(hidden))))
    return None


class MaskedTokensTrainer(Trainer):
    """The Trainer, with the loss computed from the vocabulary scores of the masked positions alone (same value as
    the model's own loss, about 2x faster on MiniLM); families without a separate head use the model's loss."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        head = vocabulary_head(model)
        if head is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        hidden = model.base_model(**inputs).last_hidden_state
        masked = labels != -100
        logits = head(hidden[masked])
        loss = F.cross_entropy(logits.float(), labels[masked]) if masked.any() else logits.sum() * 0.0
        return (loss, {"loss": loss}) if return_outputs else loss
