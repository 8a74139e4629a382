"""Layer-wise losses: a classifier on several layers of the encoder, trained with per-layer weights.

Every block of the encoder writes a hidden state; a head on layer ``l`` predicts the label from
it, and the losses are mixed with weights α (deep supervision, Lee et al., 2015)::

    L_total = Σ_l α_l · L_l(y, ŷ_l)        ŷ_l = head_l(LayerNorm(pool(h_l)))

``α = (0, …, 0, 1)`` is the plain classifier on the last layer; weight on lower layers asks them
to carry the label too (useful to exit early at inference). With the encoder frozen, the heads
are independent linear probes trained at once: what each reaches shows where the task
information lives. Shapes follow the package legend; ``N`` is the number of heads.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlstep.bert import BertConfig, BertModel
from mlstep.finetune import mean_pool
from mlstep.tasks.labeled import TensorDataset, evaluate_classifier
from mlstep.tools.checks import check_ids
from mlstep.transformer import find_backbone, init_weights

__all__ = ["layerwise_loss", "LayerwiseOutput", "LayerwiseClassifier", "layer_accuracies"]


def layerwise_loss(layer_logits: Tensor, labels: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """``(Σ_l α_l · CE(ŷ_l, y), per-layer losses (N,))`` for ``layer_logits (N, B, C)``, ``labels
    (B,)`` and ``weights (N,)``."""
    N, B, C = layer_logits.shape
    losses = F.cross_entropy(layer_logits.reshape(N * B, C), labels.repeat(N), reduction="none")  # (N·B,)
    losses = losses.view(N, B).mean(dim=1)  # (N,): each head's mean over the batch
    return (weights.to(losses.dtype) * losses).sum(), losses


class LayerwiseOutput(NamedTuple):
    loss: Tensor | None  # Σ_l α_l · L_l, None without labels
    logits: Tensor  # (B, C): the prediction of the head ``predict_with`` names (default: the last)
    layer_logits: Tensor  # (N, B, C): every head's
    layer_losses: Tensor | None  # (N,): each head's loss, None without labels


class LayerwiseClassifier(nn.Module):
    """BERT with a head on each of ``layers`` (0 = the embeddings, L = the last block), mean-pooled.

    Each head is ``LayerNorm → dropout → Linear`` (a pre-LN stack leaves its inner hidden states
    un-normalised, so every head normalises its own input). ``weights`` are the α of the loss;
    ``predict_with`` is the layer whose head gives ``logits`` (what :func:`mlstep.tasks.labeled.predict`
    and :func:`mlstep.tasks.labeled.evaluate_classifier` read).
    """

    def __init__(self, config_or_bert: BertConfig | BertModel, num_labels: int,
                 layers: Sequence[int] | None = None, weights: Sequence[float] | None = None,
                 dropout: float = 0.1):
        super().__init__()
        self.bert = config_or_bert if isinstance(config_or_bert, BertModel) else BertModel(config_or_bert)
        L, D = self.bert.config.num_layers, self.bert.config.hidden_size
        self.layers = list(range(L + 1)) if layers is None else list(layers)
        weights = [1.0] * len(self.layers) if weights is None else list(weights)
        if not self.layers or sorted(set(self.layers)) != self.layers or not 0 <= self.layers[0] <= self.layers[-1] <= L:
            raise ValueError(f"layers must be increasing indices in [0, {L}], got {self.layers}")
        if len(weights) != len(self.layers) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"weights must be {len(self.layers)} non-negative numbers, not all 0, got {weights}")
        if not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"num_labels must be an integer >= 2, got {num_labels!r}")
        self.num_labels, self.predict_with = num_labels, self.layers[-1]
        self.register_buffer("weights", torch.tensor(weights), persistent=False)  # α: (N,)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(D, eps=self.bert.config.layer_norm_eps), nn.Dropout(dropout),
                          nn.Linear(D, num_labels)) for _ in self.layers)
        self.heads.apply(lambda m: init_weights(m, self.bert.config.initializer_range))

    @classmethod
    def from_pretrained(cls, pretrained: nn.Module, num_labels: int, **kwargs: Any) -> LayerwiseClassifier:
        """Heads on a *copy* of the encoder inside ``pretrained``."""
        return cls(copy.deepcopy(find_backbone(pretrained).model), num_labels, **kwargs)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None, labels: Tensor | None = None) -> LayerwiseOutput:
        """Inputs as :meth:`mlstep.BertModel.forward`; ``labels (B,)`` in ``[0, C)``."""
        if labels is not None:
            check_ids("labels", labels, self.num_labels, "num_labels", shape=input_ids.shape[:1])
        states = self.bert(input_ids, token_type_ids, attention_mask).hidden_states  # L + 1 × (B, T, D)
        layer_logits = torch.stack([head(mean_pool(states[i], attention_mask))  # (B, D) -> (B, C)
                                    for i, head in zip(self.layers, self.heads)])  # (N, B, C)
        logits = layer_logits[self.layers.index(self.predict_with)]  # (B, C)
        if labels is None:
            return LayerwiseOutput(None, logits, layer_logits, None)
        loss, layer_losses = layerwise_loss(layer_logits, labels, self.weights)
        return LayerwiseOutput(loss, logits, layer_logits, layer_losses)


def layer_accuracies(model: LayerwiseClassifier, data: TensorDataset) -> dict[int, float]:
    """Accuracy of each head on ``data``: ``{layer: accuracy}``."""
    accuracies, predict_with = {}, model.predict_with
    try:
        for layer in model.layers:
            model.predict_with = layer
            accuracies[layer] = evaluate_classifier(model, data)
    finally:
        model.predict_with = predict_with
    return accuracies
