"""mlstep: multi-step training of transformer language models, built from scratch in PyTorch."""

from mlstep.attention import MultiHeadAttention, causal_mask, padding_mask, scaled_dot_product_attention
from mlstep.utils import autocast, count_parameters, get_device, set_seed, set_threads

__version__ = "0.1.0"

__all__ = [
    "scaled_dot_product_attention",
    "padding_mask",
    "causal_mask",
    "MultiHeadAttention",
    "get_device",
    "set_seed",
    "set_threads",
    "count_parameters",
    "autocast",
]
