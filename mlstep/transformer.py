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
"""

from __future__ import annotations

from torch import Tensor, nn

from mlstep.attention import MultiHeadAttention
from mlstep.checks import check_width
from mlstep.config import TransformerConfig

__all__ = ["FeedForward", "TransformerBlock", "Transformer", "init_weights"]


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
