"""The transformer encoder: feed-forward block, one encoder layer (post-LN as in BERT, or pre-LN),
and a stack of layers.

Shape legend (used in every comment below):
    b  batch            n  sequence positions
    d  d_model          f  feed-forward width (d_ff)
    h  attention heads

Every layer keeps the shape ``(b, n, d)``: a transformer is a residual stream of fixed width that
each sub-layer (attention, then feed-forward) reads from and adds to.

Norm placement:
    post-LN (BERT, the original transformer)::

        x = LN(x + drop(attn(x)))
        x = LN(x + drop(ffn(x)))

    pre-LN (GPT-2 and most models since; trains more stably without long warmup)::

        x = x + drop(attn(LN(x)))
        x = x + drop(ffn(LN(x)))
        ...                          # after the last layer: x = LN(x)

    Post-LN normalises the residual stream itself after each sub-layer; pre-LN leaves the stream
    un-normalised (a clean identity path for gradients) and therefore needs one final LayerNorm.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from mlstep.attention import MultiHeadAttention

__all__ = ["FeedForward", "TransformerEncoderLayer", "TransformerEncoder", "EncoderOutput"]


class FeedForward(nn.Module):
    """Position-wise feed-forward block: ``Linear(d → f) → GELU → Linear(f → d) → dropout``.

    The same two-layer MLP is applied to every position independently; it holds about two thirds
    of a BERT layer's parameters (``f = 4d``). GELU is the exact (erf) form, as in BERT.

    Args:
        d_model: input and output width ``d``.
        d_ff: hidden width ``f`` (BERT's ``intermediate_size``).
        dropout: dropout on the output (BERT's ``hidden_dropout_prob``).
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        if d_model <= 0 or d_ff <= 0:
            raise ValueError(f"d_model and d_ff must be positive, got {d_model}, {d_ff}")
        self.fc1 = nn.Linear(d_model, d_ff)
        self.act = nn.GELU()  # approximate="none": the exact erf GELU that BERT checkpoints use
        self.fc2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``x (..., d) → (..., d)``."""
        return self.dropout(self.fc2(self.act(self.fc1(x))))  # (..., f) inside, (..., d) out


class TransformerEncoderLayer(nn.Module):
    """One encoder layer: self-attention then feed-forward, each with a residual and a LayerNorm.

    Args:
        d_model: width of the residual stream ``d``.
        num_heads: attention heads; must divide ``d_model``.
        d_ff: feed-forward hidden width.
        dropout: dropout on each sub-layer's output before it is added to the residual stream.
        pre_norm: False = post-LN (BERT); True = pre-LN (see the module docstring).
        layer_norm_eps: LayerNorm epsilon (BERT uses 1e-12; PyTorch's default is 1e-5).
        fused_attention: use ``F.scaled_dot_product_attention`` inside attention (faster, same
            numbers); False runs the from-scratch attention, for teaching and inspection.
        attention_dropout: dropout on the attention weights; None = the same as ``dropout``
            (BERT's ``attention_probs_dropout_prob``).

    Submodules: ``self_attn`` (:class:`~mlstep.MultiHeadAttention`), ``norm1`` (attention
    LayerNorm), ``ffn`` (:class:`FeedForward`, which applies its own output dropout), ``norm2``.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        pre_norm: bool = False,
        layer_norm_eps: float = 1e-12,
        fused_attention: bool = True,
        attention_dropout: float | None = None,
    ):
        super().__init__()
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.d_model = d_model
        self.pre_norm = pre_norm
        self.self_attn = MultiHeadAttention(
            d_model, num_heads, dropout=attention_dropout, fused=fused_attention
        )
        self.dropout = nn.Dropout(dropout)  # on the attention output (the FFN has its own)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Run the layer on ``x (b, n, d)``.

        Args:
            x: the residual stream ``(b, n, d)``.
            mask: optional boolean mask broadcastable to ``(b, h, n, n)``, True = may attend
                (e.g. :func:`mlstep.padding_mask` of a ``(b, n)`` attention mask).

        Returns:
            The new residual stream, ``(b, n, d)``.
        """
        _check_stream(x, self.d_model)
        if self.pre_norm:
            x = x + self.dropout(self.self_attn(self.norm1(x), mask=mask))  # (b, n, d)
            x = x + self.ffn(self.norm2(x))  # (b, n, d)
        else:
            x = self.norm1(x + self.dropout(self.self_attn(x, mask=mask)))  # (b, n, d)
            x = self.norm2(x + self.ffn(x))  # (b, n, d)
        return x


class EncoderOutput(NamedTuple):
    """What :class:`TransformerEncoder` returns (always the same two fields).

    Attributes:
        last_hidden_state: output of the stack ``(b, n, d)`` (after the final LayerNorm when
            pre-LN).
        hidden_states: None unless asked for; otherwise ``num_layers + 1`` tensors ``(b, n, d)``:
            the input, then each layer's output (as in Hugging Face). With pre-LN the last entry
            is the final-normalised output, i.e. ``hidden_states[-1] is last_hidden_state``.
    """

    last_hidden_state: Tensor
    hidden_states: tuple[Tensor, ...] | None


class TransformerEncoder(nn.Module):
    """A stack of :class:`TransformerEncoderLayer` (``layers``), plus a final LayerNorm when pre-LN.

    Args:
        num_layers: number of layers.
        d_model, num_heads, d_ff, dropout, pre_norm, layer_norm_eps, fused_attention,
        attention_dropout: as in :class:`TransformerEncoderLayer`, the same for every layer.

    ``final_norm`` is a LayerNorm for pre-LN and None for post-LN (whose layers already end in one).
    """

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        pre_norm: bool = False,
        layer_norm_eps: float = 1e-12,
        fused_attention: bool = True,
        attention_dropout: float | None = None,
    ):
        super().__init__()
        if num_layers <= 0:
            raise ValueError(f"num_layers must be positive, got {num_layers}")
        self.d_model = d_model
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(
                d_model, num_heads, d_ff, dropout=dropout, pre_norm=pre_norm,
                layer_norm_eps=layer_norm_eps, fused_attention=fused_attention,
                attention_dropout=attention_dropout,
            )
            for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(d_model, eps=layer_norm_eps) if pre_norm else None

    def forward(
        self, x: Tensor, mask: Tensor | None = None, output_hidden_states: bool = False
    ) -> EncoderOutput:
        """Run every layer on ``x (b, n, d)`` with the same ``mask``.

        Args:
            x: input ``(b, n, d)`` (for BERT: the embeddings).
            mask: optional boolean mask broadcastable to ``(b, h, n, n)``, True = may attend.
            output_hidden_states: also return the input and every layer's output.

        Returns:
            :class:`EncoderOutput` ``(last_hidden_state (b, n, d), hidden_states or None)``.
        """
        _check_stream(x, self.d_model)
        states = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x, mask=mask)  # (b, n, d)
            if states is not None:
                states.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x)  # (b, n, d)
            if states is not None:
                states[-1] = x
        return EncoderOutput(x, tuple(states) if states is not None else None)


def _check_stream(x: Tensor, d_model: int) -> None:
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(
            f"expected input of shape (batch, seq_len, d_model={d_model}), got {tuple(x.shape)}"
        )
