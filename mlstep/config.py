"""The one configuration every transformer block reads: the config object goes in, as in nanoGPT.

:class:`TransformerConfig` flows unchanged into the stack (:class:`~mlstep.Transformer`), each
block, its attention and its feed-forward layer, so a field has one name everywhere.
:class:`~mlstep.BertConfig` and :class:`~mlstep.GPTConfig` extend it with what only a whole model
needs (vocabulary, positions).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from mlstep.tools.checks import check_probability

__all__ = ["TransformerConfig"]


@dataclass(frozen=True, kw_only=True)
class TransformerConfig:
    """The shape of a transformer. Every field is keyword-only: ``TransformerConfig(hidden_size=64)``."""

    hidden_size: int = 64  # D: width of the residual stream
    num_layers: int = 2  # blocks in the stack
    num_heads: int = 4  # H: attention heads; must divide hidden_size (head size K = D / H)
    intermediate_size: int = 256  # F: feed-forward hidden width (4 × D in BERT and GPT-2)
    dropout: float = 0.0  # on the attention weights and on each sub-layer's output
    layer_norm_eps: float = 1e-12  # LayerNorm epsilon (BERT: 1e-12, GPT-2: 1e-5)
    pre_norm: bool = False  # False: post-LN, as BERT; True: pre-LN, as GPT-2 (+ a final LayerNorm)
    causal: bool = False  # True: position t attends to positions <= t only, as GPT
    gelu: str = "none"  # nn.GELU's approximation: "none" = exact erf (BERT), "tanh" (GPT-2)

    def __post_init__(self) -> None:
        name = type(self).__name__
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) is int and value <= 0:
                raise ValueError(f"{name}.{f.name} must be a positive integer, got {value}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"{name}.hidden_size={self.hidden_size} is not divisible by num_heads="
                             f"{self.num_heads}: each head gets hidden_size / num_heads features")
        check_probability(f"{name}.dropout", self.dropout)
        if self.gelu not in ("none", "tanh"):
            raise ValueError(f"{name}.gelu must be 'none' or 'tanh', got {self.gelu!r}")
