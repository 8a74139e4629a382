"""The transformer: a block (attention, then a feed-forward layer, each added to a residual
stream and normalised) and a stack of blocks. BERT and GPT are both this stack.

Every block keeps the shape ``(B, T, D)``: the residual stream has a fixed width that each
sub-layer reads from and adds to. Where the LayerNorm sits is the one difference between BERT's
block and GPT-2's::

    post-LN (BERT, the original transformer)        pre-LN (GPT-2 and most models since)
        x = LN(x + drop(attn(x)))                      x = x + drop(attn(LN(x)))
        x = LN(x + drop(ffn(x)))                       x = x + drop(ffn(LN(x)))
                                                       ... after the last block: x = LN(x)

Pre-LN leaves the stream itself un-normalised (a clean identity path for the gradient), so the
stack ends with one more LayerNorm. GPT's block is BERT's with ``pre_norm=True, causal=True``.

Below both models also sit what their task heads share (:class:`ClassifierOutput`,
:func:`classifier_layers`) and :func:`find_backbone`, the one way fine-tuning strategies (freezing,
unfreezing, layer-wise rates, LoRA, pruning, layer copying) find a model's embeddings and stack, so
each strategy works on BERT and GPT alike.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from mlstep.attention import MultiHeadAttention
from mlstep.config import TransformerConfig
from mlstep.tools.checks import check_probability, check_width

__all__ = ["FeedForward", "TransformerBlock", "Transformer", "init_weights", "Backbone", "find_backbone",
           "ClassifierOutput", "classifier_layers"]


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's and GPT-2's initialisation: normal(0, std) weights, zero biases, LayerNorm 1 and 0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class FeedForward(nn.Module):
    """``Linear(D → F) → GELU → Linear(F → D) → dropout``, the same MLP at every position.

    With F = 4D it holds two thirds of a block's parameters.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = nn.GELU(approximate=config.gelu)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(self.act(self.fc1(x))))  # (..., D) -> (..., F) -> (..., D)


class TransformerBlock(nn.Module):
    """Self-attention then feed-forward, each with a residual connection and a LayerNorm."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.pre_norm = config.pre_norm
        self.attn = MultiHeadAttention(config)
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)  # on the attention output (the FFN has its own)

    def forward(self, x: Tensor, mask: Tensor | None = None, cache: dict | None = None) -> Tensor:
        """The residual stream ``x (B, T, D)`` in and out; ``mask`` and ``cache`` go to attention."""
        if self.pre_norm:
            x = x + self.dropout(self.attn(self.norm1(x), mask=mask, cache=cache))
            return x + self.ffn(self.norm2(x))
        x = self.norm1(x + self.dropout(self.attn(x, mask=mask, cache=cache)))
        return self.norm2(x + self.ffn(x))


class Transformer(nn.Module):
    """``num_layers`` blocks (``layers``), then ``final_norm``: a LayerNorm with pre-LN, else nothing."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.layers = nn.ModuleList(TransformerBlock(config) for _ in range(config.num_layers))
        self.final_norm = (nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
                           if config.pre_norm else nn.Identity())

    def forward(self, x: Tensor, mask: Tensor | None = None,
                caches: list[dict] | None = None) -> list[Tensor]:
        """The ``num_layers + 1`` hidden states ``(B, T, D)``: the input, then each block's output;
        the last is the stack's output (after the final LayerNorm). ``caches``: one per block."""
        check_width("x", x, self.hidden_size)
        states = [x]
        for i, block in enumerate(self.layers):
            x = block(x, mask, None if caches is None else caches[i])  # (B, T, D)
            states.append(x)
        states[-1] = self.final_norm(x)
        return states


class Backbone(NamedTuple):
    """The parts of a language model that fine-tuning strategies act on, BERT's and GPT's alike."""

    model: nn.Module  # the BertModel or GPT itself
    embeddings: list[nn.Module]  # what turns ids into the first hidden state (tokens, positions, segments)
    stack: Transformer  # the blocks and the final norm
    top: list[nn.Module]  # above the stack, trained with its top layer (BERT's pooler; none in a GPT)


def find_backbone(model: nn.Module) -> Backbone:
    """The :class:`Backbone` of ``model``: a BertModel, a GPT, or any task model that holds one
    (the first module, in ``model.modules()`` order, that has a ``backbone()`` method)."""
    for module in model.modules():
        if callable(getattr(type(module), "backbone", None)):
            return module.backbone()
    raise TypeError(f"{type(model).__name__} holds no mlstep.BertModel or mlstep.GPT: "
                    "pass a model built on one of them")


class ClassifierOutput(NamedTuple):
    loss: Tensor | None  # None without labels; else the mean cross-entropy over the labelled rows
    logits: Tensor  # (B, C) for sequences, (B, T, C) for tokens


def classifier_layers(hidden_size: int, num_labels: int, dropout: float,
                      initializer_range: float) -> tuple[nn.Dropout, nn.Linear]:
    """The two layers of a task head, ``(dropout, classifier)``: ``(…, D) -> (…, C)``."""
    if not isinstance(num_labels, int) or num_labels < 2:
        raise ValueError(f"num_labels must be an integer >= 2, got {num_labels!r}")
    check_probability("dropout", dropout)
    classifier = nn.Linear(hidden_size, num_labels)
    init_weights(classifier, initializer_range)
    return nn.Dropout(dropout), classifier
