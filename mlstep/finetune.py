"""Fine-tuning: BERT's task heads, and the strategies that decide which weights move.

Heads
    :class:`BertForSequenceClassification`: one label per sequence, from the pooled ``[CLS]`` or
    the mean of the real tokens. Sentence pairs (NLI) use it too: encode ``[CLS] a [SEP] b [SEP]``
    and pass ``token_type_ids``. :class:`BertForTokenClassification`: one label per token (tagging).
Strategies (in place, composing with :func:`mlstep.train`; they find the stack with ``find_backbone``: GPTs too)
    full fine-tuning is the default: every parameter trains. :func:`freeze_encoder` trains the head
    alone (a linear probe); :class:`GradualUnfreezer` wakes the layers up from the top;
    :func:`layerwise_lr_groups` gives lower layers smaller learning rates; LoRA is in
    :mod:`mlstep.lora`.

Shapes follow the package legend; C is the number of labels.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from mlstep.bert import BertConfig, BertModel
from mlstep.tools.checks import check_args, check_ids, check_keys, check_rows, check_tensor
from mlstep.tools.runtime import IGNORE_INDEX
from mlstep.transformer import ClassifierOutput, classifier_layers, find_backbone

__all__ = ["BertForSequenceClassification", "BertForTokenClassification", "classification_step", "mean_pool",
           "freeze", "unfreeze", "freeze_encoder", "unfreezing_stages", "GradualUnfreezer", "layerwise_lr_groups"]

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


class _BertWithHead(nn.Module):
    """An encoder ``bert``, dropout and a linear ``classifier``; shared by both heads."""

    def __init__(self, config_or_bert: BertConfig | BertModel, num_labels: int, dropout: float = 0.1):
        super().__init__()
        # a config builds a randomly initialised encoder ("from scratch"); a BertModel is used as is
        self.bert = config_or_bert if isinstance(config_or_bert, BertModel) else BertModel(config_or_bert)
        self.num_labels = num_labels
        self.dropout, self.classifier = classifier_layers(self.bert.config.hidden_size, num_labels, dropout,
                                                          self.bert.config.initializer_range)

    @classmethod
    def from_pretrained(cls, pretrained: nn.Module, num_labels: int, **kwargs: Any):
        """A new head on a *copy* of the encoder inside ``pretrained`` (a BertModel, a
        BertForPreTraining, another classifier): fine-tuning leaves ``pretrained`` untouched."""
        bert = find_backbone(pretrained).model
        if not isinstance(bert, BertModel):
            raise TypeError(f"{type(pretrained).__name__} holds no mlstep.BertModel; for a GPT use "
                            "mlstep.gpt.GPTForSequenceClassification.from_pretrained")
        return cls(copy.deepcopy(bert), num_labels, **kwargs)


def mean_pool(hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """The average of the real tokens' states: ``hidden (B, T, D)`` → ``(B, D)``."""
    check_tensor("hidden", hidden, dims=3, floating=True, what="(batch, positions, hidden_size)")
    if attention_mask is None:
        return hidden.mean(dim=1)
    check_rows("attention_mask", attention_mask, hidden.shape[:2])
    real = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1): 1 = real token
    return (hidden * real).sum(dim=1) / real.sum(dim=1)


class BertForSequenceClassification(_BertWithHead):
    """BERT with a linear classifier on one vector per sequence.

    ``pooling="cls"``: the pooled ``[CLS]`` state ``tanh(pooler(h[CLS]))`` (BERT's choice; NSP
    pretrained the pooler). ``"mean"``: the average of the real tokens' states, which sees every
    token directly and helps small models with negation.
    """

    def __init__(self, config_or_bert: BertConfig | BertModel, num_labels: int, dropout: float = 0.1,
                 pooling: str = "cls"):
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        super().__init__(config_or_bert, num_labels, dropout)
        self.pooling = pooling

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None, labels: Tensor | None = None) -> ClassifierOutput:
        """Inputs as :meth:`BertModel.forward`; ``labels (B,)`` in ``[0, C)``."""
        hidden, pooled, _ = self.bert(input_ids, token_type_ids, attention_mask)  # (B, T, D), (B, D)
        if labels is not None:
            check_ids("labels", labels, self.num_labels, "num_labels", shape=input_ids.shape[:1])
        if self.pooling == "mean":
            pooled = mean_pool(hidden, attention_mask)  # (B, D)
        logits = self.classifier(self.dropout(pooled))  # (B, C)
        return ClassifierOutput(None if labels is None else F.cross_entropy(logits, labels), logits)


class BertForTokenClassification(_BertWithHead):
    """BERT with a linear classifier at every position (entity or part-of-speech tags).

    A word cut into several pieces is labelled on its first piece; the other pieces, the specials
    and the padding carry label −100 and no loss.
    """

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None, labels: Tensor | None = None) -> ClassifierOutput:
        """Inputs as :meth:`BertModel.forward`; ``labels (B, T)`` in ``[0, C)`` or −100."""
        hidden = self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state  # (B, T, D)
        if labels is not None:
            check_ids("labels", labels, self.num_labels, "num_labels", shape=input_ids.shape,
                      ignore=IGNORE_INDEX)
            if not (labels != IGNORE_INDEX).any():
                raise ValueError("labels are all -100: no position to compute a loss on")
        logits = self.classifier(self.dropout(hidden))  # (B, T, C)
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                                         ignore_index=IGNORE_INDEX)  # (B·T, C), (B·T,)
        return ClassifierOutput(loss, logits)


def classification_step(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """A ``step_fn`` for :func:`mlstep.train`: ``model(**batch)``, and the training accuracy on
    the labelled rows or tokens. Keys other than the model's inputs and ``labels`` are ignored."""
    check_args(model=(model, callable))
    check_keys("batch", batch, ("input_ids", "labels"))
    out = model(**{k: batch[k] for k in (*MODEL_INPUTS, "labels") if k in batch})
    labelled = batch["labels"] != IGNORE_INDEX
    accuracy = (out.logits.argmax(-1)[labelled] == batch["labels"][labelled]).float().mean()
    return out.loss, {"accuracy": accuracy.item()}


def freeze(module: nn.Module) -> nn.Module:
    """No gradient for any parameter of ``module`` (AdamW then leaves them untouched); returns it."""
    check_args(module=(module, nn.Module))
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """Every parameter of ``module`` trainable again; returns it."""
    check_args(module=(module, nn.Module))
    for p in module.parameters():
        p.requires_grad_(True)
    return module


def freeze_encoder(model: nn.Module) -> nn.Module:
    """A linear probe: freeze the backbone (BERT's embeddings, layers and pooler, or a whole GPT)
    so only the head trains. What the probe reaches measures what pretraining put into the features.
    """
    freeze(find_backbone(model).model)
    return model


def unfreezing_stages(model: nn.Module) -> list[list[nn.Parameter]]:
    """The order gradual unfreezing wakes parameters up: the head (everything outside the
    backbone), then the top layer (with the final LayerNorm and BERT's pooler above it), …, the
    bottom layer, then the embeddings."""
    backbone = find_backbone(model)
    inside = {id(p) for p in backbone.model.parameters()}
    layers = [list(layer.parameters()) for layer in backbone.stack.layers]
    layers[-1] += [*backbone.stack.final_norm.parameters(), *nn.ModuleList(backbone.top).parameters()]
    return [[p for p in model.parameters() if id(p) not in inside], *reversed(layers),
            list(nn.ModuleList(backbone.embeddings).parameters())]


class GradualUnfreezer:
    """Gradual unfreezing (ULMFiT) from inside a ``step_fn``, since the loop has no callbacks::

        unfreezer = GradualUnfreezer(model, steps_per_stage=75)
        train(model, loader, unfreezer.wrap(classification_step), config)

    Stage ``k`` (steps ``k·steps_per_stage`` onwards) trains the first ``k + 1`` entries of
    :func:`unfreezing_stages`. Everything is made trainable now, so the optimizer that ``train``
    builds holds every parameter; a frozen one simply gets no gradient, which AdamW skips.
    """

    def __init__(self, model: nn.Module, steps_per_stage: int):
        check_args(steps_per_stage=(steps_per_stage, "int > 0"))
        self.stages, self.steps_per_stage, self.step = unfreezing_stages(model), steps_per_stage, 0
        unfreeze(model)

    def wrap(self, step_fn: Callable[[nn.Module, Any], Any]) -> Callable[[nn.Module, Any], Any]:
        def wrapped(model: nn.Module, batch: Any) -> Any:
            stage = min(self.step // self.steps_per_stage, len(self.stages) - 1)
            for i, params in enumerate(self.stages):
                for p in params:
                    p.requires_grad_(i <= stage)
            self.step += 1
            return step_fn(model, batch)

        return wrapped


def layerwise_lr_groups(model: nn.Module, base_lr: float, decay: float = 0.8,
                        head_lr: float | None = None) -> list[dict[str, Any]]:
    """Discriminative learning rates: with L layers, layer ``l`` (1 = bottom) trains at
    ``base_lr · decay^(L - l)``, the embeddings at ``base_lr · decay^L``, the final LayerNorm (and
    BERT's pooler) at ``base_lr``, the head at ``head_lr`` (default ``base_lr``). For
    ``train(..., param_groups=...)``; frozen parameters are left out."""
    check_args(base_lr=(base_lr, "> 0"), decay=(decay, "in (0, 1]"), head_lr=(head_lr, "> 0", None))
    backbone = find_backbone(model)
    layers = backbone.stack.layers
    L = len(layers)
    parts = [("embeddings", nn.ModuleList(backbone.embeddings), decay**L)]
    parts += [(f"layer{i}", layer, decay ** (L - 1 - i)) for i, layer in enumerate(layers)]
    parts += [("top", nn.ModuleList([backbone.stack.final_norm, *backbone.top]), 1.0), ("head", model, None)]
    groups, seen = [], set()
    for name, module, factor in parts:  # the head is what the encoder parts left over
        params = [p for p in module.parameters() if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in params)
        lr = base_lr * factor if factor is not None else (head_lr or base_lr)
        if params:
            groups.append({"params": params, "lr": lr, "name": name})
    return groups
