"""The router model: one transformer encoder, dropout, and one linear head per task on the pooled [CLS] token.

`RouterConfig` nests the encoder's own config (any BERT-family architecture: BERT, DistilBERT, MiniLM, RoBERTa)
and the task specs, so `save_pretrained` writes ONE directory (config.json + model.safetensors, with the
tokenizer saved beside them by the trainer) and `from_pretrained` needs nothing else.

The learned loss log-variances (`log_vars`, one per task) live in the model so that the optimizer trains them
and every checkpoint carries them; inference never reads them.
"""

from __future__ import annotations

import copy
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
    task_specific_layers: int = 0  # K: the top K encoder layers are copied per task (partial sharing)

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


def _layer_stack(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's transformer layers: BERT/MiniLM/RoBERTa `encoder.layer`, DistilBERT `transformer.layer`."""
    for name, module in encoder.named_modules():
        if name.split(".")[-1] == "layer" and isinstance(module, nn.ModuleList):
            return module
    raise ValueError(f"cannot find the transformer layers of {type(encoder).__name__}")


def _branch_top_layers(encoder: nn.Module, k: int, num_tasks: int) -> nn.ModuleList:
    """Cut the top k layers off the encoder (in place) and return one copy of them per task."""
    layers = _layer_stack(encoder)
    if not 0 < k < len(layers):
        raise ValueError(f"task_specific_layers={k} must be between 1 and {len(layers) - 1} for this encoder")
    top = list(layers[len(layers) - k:])
    del layers[len(layers) - k:]
    return nn.ModuleList(nn.ModuleList(copy.deepcopy(layer) for layer in top) for _ in range(num_tasks))


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
        # Partial sharing: the encoder keeps its bottom layers, each task gets its own copy of the top K. The
        # layers' extra inputs (the attention mask in the form this architecture builds) are recorded as the
        # encoder's first layer receives them and handed to the copies unchanged.
        self.task_layers = None
        if config.task_specific_layers:
            self.task_layers = _branch_top_layers(self.encoder, config.task_specific_layers, len(specs))
            _layer_stack(self.encoder)[0].register_forward_pre_hook(self._record_layer_inputs, with_kwargs=True)
        self._layer_inputs: tuple[tuple, dict] = ((), {})
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

    @classmethod
    def branched_from_backbone(cls, encoder: PreTrainedModel, tasks: Sequence[TaskSpec], task_specific_layers: int,
                               **kwargs) -> "MultiTaskRouterModel":
        """`from_backbone` with each task's own copy of the encoder's top `task_specific_layers` layers."""
        template = cls.from_backbone(encoder, tasks, **kwargs)
        template.config.task_specific_layers = task_specific_layers
        layers = _layer_stack(template.encoder)
        top_state = [copy.deepcopy(layer.state_dict()) for layer in layers[len(layers) - task_specific_layers:]]
        state = {k: v.clone() for k, v in template.encoder.state_dict().items()}
        model = cls(template.config, encoder=template.encoder)
        _, cut = model.encoder.load_state_dict(state, strict=False)  # again: post_init must not re-initialise
        if len(cut) != len(top_state[0]) * task_specific_layers:
            raise ValueError(f"unexpected encoder weights after branching: {cut[:3]}")
        for branch in model.task_layers:
            for layer, state in zip(branch, top_state):
                layer.load_state_dict(state)
        for name in ("heads", "token_scorers", "log_vars"):
            setattr(model, name, getattr(template, name))
        return model

    def _record_layer_inputs(self, module, args, kwargs):
        self._layer_inputs = (args[1:], kwargs)

    def _run_task_layers(self, t: int, hidden: torch.Tensor) -> torch.Tensor:
        args, kwargs = self._layer_inputs
        for layer in self.task_layers[t]:
            out = layer(hidden, *args, **kwargs)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

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
        if self.task_layers is None:
            pooled = self.pool(hidden, attention_mask)
        else:  # each task pools its own branch's output (its own scorer with attention pooling)
            pooled = [self.pool(self._run_task_layers(t, hidden), attention_mask)[t] for t in range(len(self.heads))]
        if self.token_scorers is None and self.task_layers is None:  # one shared vector: one dropout mask
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
