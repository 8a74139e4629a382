"""BERT from scratch: configuration, embeddings, the encoder and its pooler, the masked-LM and
next-sentence pretraining heads, and loading Hugging Face weights into it.

Module names follow Hugging Face's where that maps real checkpoints onto ours (``embeddings``,
``word_embeddings``, ``LayerNorm``, ``pooler``, ``predictions``, ``seq_relationship``). Shapes
follow the package legend; M counts the masked positions of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlstep.attention import padding_mask
from mlstep.config import TransformerConfig
from mlstep.tools.checks import check_ids, check_rows
from mlstep.tools.runtime import IGNORE_INDEX
from mlstep.transformer import Backbone, Transformer, init_weights

__all__ = ["BertConfig", "BertEmbeddings", "BertModel", "BertOutput", "BertForPreTraining",
           "PreTrainingOutput", "mlm_loss", "bert_from_hf"]


@dataclass(frozen=True, kw_only=True)
class BertConfig(TransformerConfig):
    """A BERT: a post-LN :class:`~mlstep.TransformerConfig` plus vocabulary, positions and segments.

    The defaults are the course's tiny CPU model. ``bert-base-uncased`` is ``BertConfig(30522,
    hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, max_position=512)``.
    """

    vocab_size: int = field(kw_only=False)  # V: token ids, the specials [PAD] [CLS] ... included
    dropout: float = 0.1  # BERT's (Hugging Face's default); the course's small models use 0
    max_position: int = 128  # longest sequence: rows of the learned position table
    type_vocab_size: int = 2  # segment ids: 0 = sentence A, 1 = sentence B
    initializer_range: float = 0.02  # std of the normal initialisation of every weight

    @classmethod
    def from_hf(cls, hf_config: Any, **overrides: Any) -> BertConfig:
        """The config of a Hugging Face ``transformers.BertConfig``; ``overrides`` set our own fields."""
        unsupported = {"hidden_act": "gelu", "position_embedding_type": "absolute",
                       "is_decoder": False, "add_cross_attention": False, "tie_word_embeddings": True}
        for key, ours in unsupported.items():
            theirs = getattr(hf_config, key, ours)
            if theirs != ours:
                raise ValueError(f"unsupported {key}={theirs!r}: mlstep's BERT has {key}={ours!r}")
        return cls(vocab_size=hf_config.vocab_size, hidden_size=hf_config.hidden_size,
                   num_layers=hf_config.num_hidden_layers, num_heads=hf_config.num_attention_heads,
                   intermediate_size=hf_config.intermediate_size,
                   max_position=hf_config.max_position_embeddings, type_vocab_size=hf_config.type_vocab_size,
                   dropout=hf_config.hidden_dropout_prob, layer_norm_eps=hf_config.layer_norm_eps,
                   initializer_range=hf_config.initializer_range, **overrides)


class BertEmbeddings(nn.Module):
    """``LayerNorm(word[ids] + position[0..T-1] + token_type[segments])``, then dropout.

    Attention is blind to order: the position embedding tells the model where each token is; the
    token-type (segment) embedding tells sentence A from sentence B.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (T,)
        x = (self.word_embeddings(input_ids)  # (B, T, D)
             + self.position_embeddings(positions)  # (T, D), the same for every sequence
             + self.token_type_embeddings(token_type_ids))  # (B, T, D)
        return self.dropout(self.LayerNorm(x))


class BertOutput(NamedTuple):
    last_hidden_state: Tensor  # (B, T, D): the encoder's output at every position
    pooled_output: Tensor  # (B, D): tanh(pooler(last_hidden_state[:, 0])), the [CLS] summary
    hidden_states: tuple[Tensor, ...]  # L + 1 tensors (B, T, D): the embeddings, then each block's output


class BertModel(nn.Module):
    """Embeddings → :class:`~mlstep.Transformer` (``encoder``) → pooler."""

    def __init__(self, config: BertConfig):
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be a mlstep.BertConfig, got {type(config).__name__}")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = Transformer(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)  # read by the NSP/[CLS] heads
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def backbone(self) -> Backbone:
        """What strategies act on: the embeddings, the ``encoder`` stack and, above it, the pooler."""
        return Backbone(self, [self.embeddings], self.encoder, [self.pooler])

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None) -> BertOutput:
        """``input_ids (B, T)``; ``token_type_ids (B, T)`` (default 0); ``attention_mask (B, T)``,
        1 = real token, 0 = padding (default: all real)."""
        cfg = self.config
        check_ids("input_ids", input_ids, cfg.vocab_size, "vocab_size")
        if input_ids.dim() != 2 or not 0 < input_ids.shape[1] <= cfg.max_position:
            raise ValueError(f"input_ids must be (batch, seq_len) with 0 < seq_len <= max_position="
                             f"{cfg.max_position}, got {tuple(input_ids.shape)}; truncate longer inputs")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        check_ids("token_type_ids", token_type_ids, cfg.type_vocab_size, "type_vocab_size",
                  shape=input_ids.shape)
        mask = None
        if attention_mask is not None:
            check_rows("attention_mask", attention_mask, input_ids.shape)
            mask = padding_mask(attention_mask)  # (B, 1, 1, T): every query sees the real keys
        states = self.encoder(self.embeddings(input_ids, token_type_ids), mask)  # L + 1 × (B, T, D)
        hidden = states[-1]
        return BertOutput(hidden, torch.tanh(self.pooler(hidden[:, 0])), tuple(states))


class BertLMPredictionHead(nn.Module):
    """``decoder(LayerNorm(GELU(dense(h)))) + bias``: vocabulary logits from hidden states.

    The decoder's weight *is* the word-embedding matrix (tied: one Parameter, two uses), which
    saves V × D parameters and makes "the vector of this token" one thing at input and output.
    """

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = nn.Sequential()  # named like Hugging Face: transform.dense, transform.LayerNorm
        self.transform.add_module("dense", nn.Linear(config.hidden_size, config.hidden_size))
        self.transform.add_module("act", nn.GELU())
        self.transform.add_module("LayerNorm", nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps))
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.decoder.weight = word_embeddings.weight  # tied
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: Tensor) -> Tensor:
        return self.decoder(self.transform(hidden)) + self.bias  # (..., D) -> (..., V)


class PreTrainingOutput(NamedTuple):
    loss: Tensor | None  # None without labels; else the MLM loss (+ the NSP loss with nsp_labels)
    mlm_logits: Tensor  # (B, T, V) without mlm_labels; with them (M, V), the masked positions only
    nsp_logits: Tensor  # (B, 2): class 0 = B follows A, 1 = B is random (Hugging Face's convention)


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy over the positions whose label is not −100: ``logits (..., V)``, ``labels (...)``.

    Averaging over every position instead would divide by ~7× too many (15 % are targets).
    """
    logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)  # (M, V), (M,)
    if labels.numel() == 0:
        return logits.sum() * 0.0  # no target in the batch: 0, not NaN
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)


class BertForPreTraining(nn.Module):
    """BERT with its two pretraining heads: masked-LM (``predictions``) and NSP (``seq_relationship``).

    With ``mlm_labels`` the hidden states of the masked positions are picked out *before* the
    D → V projection, which then runs on ~15 % of the positions: the largest matrix product of a
    small model with a real vocabulary, made ~7× cheaper.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.predictions = BertLMPredictionHead(config, self.bert.embeddings.word_embeddings)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)  # NSP, on the pooled [CLS]
        for head in (self.predictions.transform, self.seq_relationship):  # the decoder is the embedding
            head.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None, mlm_labels: Tensor | None = None,
                nsp_labels: Tensor | None = None) -> PreTrainingOutput:
        """Inputs as :meth:`BertModel.forward`. ``mlm_labels (B, T)``: the original id at masked
        positions, −100 elsewhere; ``mlm_logits`` row i then predicts ``mlm_labels[mlm_labels !=
        -100][i]``. ``nsp_labels (B,)``: 0 = B follows A, 1 = B is random."""
        if mlm_labels is not None:
            check_ids("mlm_labels", mlm_labels, self.config.vocab_size, "vocab_size",
                      shape=input_ids.shape, ignore=IGNORE_INDEX)
        if nsp_labels is not None:
            check_ids("nsp_labels", nsp_labels, 2, "num_labels", shape=input_ids.shape[:1])
        hidden, pooled, _ = self.bert(input_ids, token_type_ids, attention_mask)  # (B, T, D), (B, D)
        nsp_logits = self.seq_relationship(pooled)  # (B, 2)
        loss = None
        if mlm_labels is None:
            mlm_logits = self.predictions(hidden)  # (B, T, V)
        else:
            selected = mlm_labels != IGNORE_INDEX  # (B, T)
            mlm_logits = self.predictions(hidden[selected])  # (M, D) -> (M, V)
            loss = mlm_loss(mlm_logits, mlm_labels[selected])
        if nsp_labels is not None:
            nsp = F.cross_entropy(nsp_logits, nsp_labels)
            loss = nsp if loss is None else loss + nsp
        return PreTrainingOutput(loss, mlm_logits, nsp_logits)


@torch.no_grad()
def bert_from_hf(hf_model: Any, **overrides: Any) -> BertForPreTraining:
    """Our :class:`BertForPreTraining` with a copy of a Hugging Face ``BertForPreTraining``'s weights.

    ``bert_from_hf(BertForPreTraining.from_pretrained("bert-base-uncased"))`` loads real BERT into
    the model you built; outputs equal the Hugging Face model's to float32 rounding.
    ``overrides`` set :class:`BertConfig` fields (e.g. ``dropout=0.0``).
    """
    if not (hasattr(hf_model, "bert") and hasattr(getattr(hf_model, "cls", None), "seq_relationship")):
        raise TypeError(f"expected a transformers.BertForPreTraining, got {type(hf_model).__name__}")
    model = BertForPreTraining(BertConfig.from_hf(hf_model.config, **overrides))
    hb, preds = hf_model.bert, hf_model.cls.predictions

    def copy(ours: nn.Module, theirs: nn.Module) -> None:
        ours.load_state_dict({k: v for k, v in theirs.state_dict().items() if k in ("weight", "bias")})

    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm"):
        copy(getattr(model.bert.embeddings, name), getattr(hb.embeddings, name))
    for ours, theirs in zip(model.bert.encoder.layers, hb.encoder.layer, strict=True):
        for dst, src in ((ours.attn.q_proj, theirs.attention.self.query),
                         (ours.attn.k_proj, theirs.attention.self.key),
                         (ours.attn.v_proj, theirs.attention.self.value),
                         (ours.attn.out_proj, theirs.attention.output.dense),
                         (ours.norm1, theirs.attention.output.LayerNorm),
                         (ours.ffn.fc1, theirs.intermediate.dense), (ours.ffn.fc2, theirs.output.dense),
                         (ours.norm2, theirs.output.LayerNorm)):
            copy(dst, src)
    copy(model.bert.pooler, hb.pooler.dense)
    copy(model.predictions.transform.dense, preds.transform.dense)
    copy(model.predictions.transform.LayerNorm, preds.transform.LayerNorm)
    model.predictions.bias.copy_(preds.decoder.bias if preds.decoder.bias is not None else preds.bias)
    copy(model.seq_relationship, hf_model.cls.seq_relationship)
    ref = hb.embeddings.word_embeddings.weight
    return model.to(device=ref.device, dtype=ref.dtype).train(hf_model.training)
