"""The router model: one transformer encoder, dropout, and one linear head per task on the pooled [CLS] token.

`RouterConfig` nests the encoder's own config (any BERT-family architecture: BERT, DistilBERT, MiniLM, RoBERTa)
and the task specs, so `save_pretrained` writes ONE directory (config.json + model.safetensors, with the
tokenizer saved beside them by the trainer) and `from_pretrained` needs nothing else.

The learned loss log-variances (`log_vars`, one per task) live in the model so that the optimizer trains them
and every checkpoint carries them; inference never reads them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from .losses import masked_task_losses
from .tasks import TaskSpec

logger = logging.getLogger(__name__)


class Pooling(str, Enum):
    CLS = "cls"  # first token; DistilBERT/BERT [CLS], RoBERTa <s>
    MEAN = "mean"  # attention-masked mean of the last hidden states
    # Per task, a learned softmax over tokens (one scoring vector per head). It starts as the mean (zero scores)
    # and lets each head read its own tokens: urgency words for urgency, product names for the queue, from the
    # same encoder pass.
    ATTENTION = "attention"


class RouterConfig(PreTrainedConfig):
    model_type = "ticket_router"

    encoder: dict | None = None
    tasks: list | None = None
    text_columns: list | None = None
    pooling: str = "cls"
    classifier_dropout: float = 0.1
    max_length: int = 128
    backbone: str | None = None

    def task_specs(self) -> list[TaskSpec]:
        return [TaskSpec.from_dict(task) for task in (self.tasks or [])]

    def encoder_config(self):
        encoder = dict(self.encoder or {})
        return AutoConfig.for_model(encoder.pop("model_type"), **encoder)


@dataclass
class RouterOutput(ModelOutput):
    """`logits` holds one (batch, n_labels) tensor per task, in task order."""

    loss: torch.Tensor | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    # Only with `return_hidden=True` (the trainer's per-task gradients): the encoder's last hidden states, and the
    # tensor the heads read (the same one, or with `detach_hidden` a detached leaf copy of it).
    encoder_hidden: torch.Tensor | None = None
    head_hidden: torch.Tensor | None = None


def _drop_pooler(encoder: nn.Module) -> nn.Module:
    # BERT's tanh pooler is never used (heads read the raw first-token state); removing it saves parameters and
    # keeps distributed training free of parameters that never get a gradient.
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder


class MultiTaskRouterModel(PreTrainedModel):
    config_class = RouterConfig
    base_model_prefix = "router"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules: list[str] = []

    def __init__(self, config: RouterConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        specs = config.task_specs()
        if not specs:
            raise ValueError("RouterConfig has no tasks")
        self.encoder = _drop_pooler(encoder if encoder is not None else AutoModel.from_config(config.encoder_config()))
        hidden = self.encoder.config.hidden_size
        self.dropout = nn.Dropout(config.classifier_dropout)
        # A ModuleList, not a ModuleDict: task names are free text ("train", "type"...) and must not clash with
        # nn.Module attributes.
        self.heads = nn.ModuleList(nn.Linear(hidden, spec.num_labels) for spec in specs)
        self.token_scorers = None
        if config.pooling == Pooling.ATTENTION.value:
            self.token_scorers = nn.ModuleList(nn.Linear(hidden, 1) for _ in specs)
        self.log_vars = nn.Parameter(torch.zeros(len(specs)))
        self._encoder_takes_token_types = "token_type_ids" in inspect.signature(self.encoder.forward).parameters
        self.post_init()

    @property
    def task_names(self) -> list[str]:
        return [task["name"] for task in self.config.tasks]

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear) and any(module is head for head in getattr(self, "heads", [])):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and any(module is s for s in getattr(self, "token_scorers", None) or []):
            nn.init.zeros_(module.weight)  # uniform attention at the start: attention pooling begins as the mean
            nn.init.zeros_(module.bias)
        elif module is self and hasattr(self, "log_vars"):
            nn.init.zeros_(self.log_vars)

    @classmethod
    def from_backbone(
        cls,
        encoder: PreTrainedModel,
        tasks: Sequence[TaskSpec],
        text_columns: Sequence[str],
        pooling: Pooling | str = Pooling.CLS,
        classifier_dropout: float = 0.1,
        max_length: int = 128,
        backbone: str | None = None,
    ) -> "MultiTaskRouterModel":
        """A fresh router on a pretrained encoder (its weights kept, heads initialised)."""
        config = RouterConfig(
            encoder=encoder.config.to_dict(),
            tasks=[spec.to_dict() for spec in tasks],
            text_columns=list(text_columns),
            pooling=Pooling(pooling).value,
            classifier_dropout=classifier_dropout,
            max_length=max_length,
            backbone=backbone,
            pad_token_id=getattr(encoder.config, "pad_token_id", None),
        )
        state = {k: v.clone() for k, v in _drop_pooler(encoder).state_dict().items()}
        model = cls(config, encoder=encoder)
        model.encoder.load_state_dict(state)  # post_init must not have re-initialised pretrained weights
        return model

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> list[torch.Tensor]:
        """One pooled vector per task (the same tensor for every task unless pooling is attention)."""
        if self.config.pooling == Pooling.ATTENTION.value:
            return [self._attention_pool(hidden, attention_mask, scorer) for scorer in self.token_scorers]
        if self.config.pooling == Pooling.MEAN.value and attention_mask is not None:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return [(hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)] * len(self.heads)
        return [hidden[:, 0]] * len(self.heads)

    @staticmethod
    def _attention_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, scorer: nn.Linear) -> torch.Tensor:
        scores = scorer(hidden).squeeze(-1)
        if attention_mask is not None:
            scores = scores.masked_fill(attention_mask == 0, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1).unsqueeze(-1)
        return (weights * hidden).sum(1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_hidden: bool = False,
        detach_hidden: bool = False,
    ) -> RouterOutput:
        """`detach_hidden` cuts the graph between the encoder and the heads, so that a trainer can send the encoder
        a gradient of its own making (`encoder_hidden.backward(g)`, e.g. after PCGrad) while the heads keep theirs."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self._encoder_takes_token_types:
            inputs["token_type_ids"] = token_type_ids
        encoder_hidden = self.encoder(**inputs).last_hidden_state
        hidden = encoder_hidden.detach().requires_grad_() if detach_hidden else encoder_hidden
        pooled = self.pool(hidden, attention_mask)
        if self.token_scorers is None:  # one shared vector: one dropout mask for all heads
            pooled = [self.dropout(pooled[0])] * len(self.heads)
        else:
            pooled = [self.dropout(vector) for vector in pooled]
        logits = tuple(head(vector) for head, vector in zip(self.heads, pooled))
        loss = None
        if labels is not None:  # plain equal-weight loss for direct use; the trainer does its own weighting
            loss = masked_task_losses(logits, labels)[0].sum()
        if return_hidden or detach_hidden:
            return RouterOutput(loss=loss, logits=logits, encoder_hidden=encoder_hidden, head_hidden=hidden)
        return RouterOutput(loss=loss, logits=logits)


# Registering the config lets AutoConfig/AutoTokenizer (which read config.json) recognise a router directory.
AutoConfig.register(RouterConfig.model_type, RouterConfig, exist_ok=True)
