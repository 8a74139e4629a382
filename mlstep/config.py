"""The one configuration every transformer block reads: the config object goes in, as in nanoGPT.

:class:`TransformerConfig` flows unchanged into the stack (:class:`~mlstep.Transformer`), each
block, its attention and its feed-forward layer, so a field has one name everywhere.
:class:`~mlstep.BertConfig` and :class:`~mlstep.GPTConfig` extend it with what only a whole model
needs (vocabulary, positions). The last fields are the modern decoder's options (Llama, Qwen3):
their defaults are BERT's and GPT-2's choices, so a config that leaves them out is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from mlstep.tools.checks import check_fields, check_probability

__all__ = ["TransformerConfig"]

OPTIONS = ("positions", "rope_theta", "norm", "ffn", "num_kv_heads", "qk_norm", "bias", "tie_embeddings")


@dataclass(frozen=True, kw_only=True, repr=False)
class TransformerConfig:
    """The shape of a transformer. Every field is keyword-only: ``TransformerConfig(hidden_size=64)``."""

    hidden_size: int = 64  # D: width of the residual stream
    num_layers: int = 2  # blocks in the stack
    num_heads: int = 4  # H: attention heads; must divide hidden_size (head size K = D / H)
    intermediate_size: int = 256  # F: feed-forward hidden width (4 × D in BERT and GPT-2)
    dropout: float = 0.0  # on the attention weights and on each sub-layer's output
    layer_norm_eps: float = 1e-12  # LayerNorm (or RMSNorm) epsilon (BERT: 1e-12, GPT-2: 1e-5)
    pre_norm: bool = False  # False: post-LN, as BERT; True: pre-LN, as GPT-2 (+ a final LayerNorm)
    causal: bool = False  # True: position t attends to positions <= t only, as GPT
    gelu: str = "none"  # nn.GELU's approximation: "none" = exact erf (BERT), "tanh" (GPT-2)
    positions: str = "learned"  # "learned": a position table (BERT, GPT-2); "rope": q, k rotated (Llama)
    rope_theta: float = 10000.0  # RoPE's base θ: feature pair i turns by position · θ^(−2i/K)
    norm: str = "layernorm"  # "layernorm"; "rmsnorm": x / rms(x) · g, no mean, no bias (Llama)
    ffn: str = "gelu"  # "gelu": fc2(GELU(fc1 x)); "swiglu": fc2(SiLU(fc1 x) ⊙ up x) (Llama)
    num_kv_heads: int | None = None  # G key/value heads (None: H); G < H is grouped-query attention
    qk_norm: bool = False  # RMSNorm on each head's queries and keys (Qwen3, OLMo 2)
    bias: bool = True  # False: the attention and feed-forward linears have no bias (Llama)

    def __post_init__(self) -> None:
        name = type(self).__name__
        check_fields(self)  # each field of the kind its annotation names: int > 0, float >= 0, bool, str
        if self.hidden_size % self.num_heads:
            raise ValueError(f"{name}.hidden_size={self.hidden_size} is not divisible by num_heads="
                             f"{self.num_heads}: each head gets hidden_size / num_heads features")
        check_probability(f"{name}.dropout", self.dropout)
        for key, allowed in (("gelu", ("none", "tanh")), ("positions", ("learned", "rope")),
                             ("norm", ("layernorm", "rmsnorm")), ("ffn", ("gelu", "swiglu"))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{name}.{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.num_kv_heads is not None and self.num_heads % self.num_kv_heads:
            raise ValueError(f"{name}.num_kv_heads={self.num_kv_heads} must divide num_heads={self.num_heads}: "
                             "each key/value head serves the same number of query heads")
        if self.positions == "rope" and (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"{name}: positions='rope' turns pairs of features, so the head size "
                             f"hidden_size / num_heads = {self.hidden_size // self.num_heads} must be even")
        if not self.rope_theta > 0:
            raise ValueError(f"{name}.rope_theta must be positive, got {self.rope_theta}")

    def __repr__(self) -> str:
        """As a dataclass prints itself, less the options left at their defaults (old configs print as before)."""
        shown = [f for f in fields(self) if f.name not in OPTIONS or getattr(self, f.name) != f.default]
        return f"{type(self).__qualname__}({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in shown)})"
