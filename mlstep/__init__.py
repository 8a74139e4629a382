"""mlstep: multi-step training of transformer language models, built from scratch in PyTorch."""

from mlstep.attention import MultiHeadAttention, causal_mask, padding_mask, scaled_dot_product_attention
from mlstep.bert import (
    BertConfig,
    BertEmbeddings,
    BertForPreTraining,
    BertLMPredictionHead,
    BertModel,
    BertOutput,
    PreTrainingOutput,
    bert_from_hf,
    mlm_loss,
    nsp_loss,
)
from mlstep.exercises import (
    CHECKS,
    check_attention,
    check_attention_weights,
    check_causal_mask,
    check_merge_heads,
    check_split_heads,
)
from mlstep.masking import IGNORE_INDEX, mask_tokens, nsp_pairs, sop_pairs
from mlstep.tokenizer import SPECIAL_TOKENS, Encoding, WordPieceTokenizer, normalize_and_pretokenize
from mlstep.transformer import EncoderOutput, FeedForward, TransformerEncoder, TransformerEncoderLayer
from mlstep.utils import autocast, count_parameters, get_device, set_seed, set_threads

__version__ = "0.1.0"

__all__ = [
    # attention
    "scaled_dot_product_attention", "padding_mask", "causal_mask", "MultiHeadAttention",
    # encoder and BERT
    "FeedForward", "TransformerEncoderLayer", "TransformerEncoder", "EncoderOutput",
    "BertConfig", "BertEmbeddings", "BertModel", "BertOutput", "BertLMPredictionHead",
    "BertForPreTraining", "PreTrainingOutput", "mlm_loss", "nsp_loss", "bert_from_hf",
    # tokenizer
    "WordPieceTokenizer", "Encoding", "SPECIAL_TOKENS", "normalize_and_pretokenize",
    # pretraining data
    "IGNORE_INDEX", "mask_tokens", "nsp_pairs", "sop_pairs",
    # exercises
    "CHECKS", "check_attention", "check_attention_weights", "check_causal_mask",
    "check_merge_heads", "check_split_heads",
    # utilities
    "get_device", "set_seed", "set_threads", "count_parameters", "autocast",
]
