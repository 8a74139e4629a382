"""BERT from scratch: configuration, embeddings, encoder + pooler, MLM and NSP pretraining heads,
and loading Hugging Face ``BertForPreTraining`` weights.

Shape legend (used in every comment below):
    b  batch            n  sequence positions
    H  hidden size      V  vocabulary size
    m  number of masked positions in the batch (MLM targets)

Submodule names follow Hugging Face where it helps map to real checkpoints (``embeddings``,
``word_embeddings``, ``LayerNorm``, ``pooler``, ``predictions``, ``seq_relationship``); the encoder
is :class:`mlstep.TransformerEncoder` (``encoder.layers[i]``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlstep.attention import padding_mask
from mlstep.transformer import TransformerEncoder

__all__ = [
    "BertConfig",
    "BertEmbeddings",
    "BertModel",
    "BertOutput",
    "BertLMPredictionHead",
    "BertForPreTraining",
    "PreTrainingOutput",
    "mlm_loss",
    "nsp_loss",
    "bert_from_hf",
]

IGNORE_INDEX = -100  # label of positions that are not MLM targets (PyTorch's and HF's convention)


@dataclass(frozen=True)
class BertConfig:
    """Hyper-parameters of a BERT model. The defaults are the course's tiny CPU model;
    ``bert-base-uncased`` is ``BertConfig(30522, 768, 12, 12, 3072, 512)``."""

    vocab_size: int  # number of token ids (WordPiece vocabulary incl. [PAD] [UNK] [CLS] [SEP] [MASK])
    hidden_size: int = 64  # width H of the residual stream and of every embedding
    num_layers: int = 2  # encoder layers
    num_heads: int = 4  # attention heads per layer; must divide hidden_size
    intermediate_size: int = 256  # feed-forward hidden width (4 × hidden_size in BERT)
    max_position: int = 128  # longest sequence: size of the learned position-embedding table
    type_vocab_size: int = 2  # segment ids: 0 = sentence A, 1 = sentence B
    dropout: float = 0.1  # dropout on embeddings and on each sub-layer's output
    layer_norm_eps: float = 1e-12  # LayerNorm epsilon (BERT's value)
    pre_norm: bool = False  # False = post-LN as in BERT; True = pre-LN (+ final LayerNorm)
    fused_attention: bool = True  # F.scaled_dot_product_attention (fast) vs the from-scratch path
    attention_dropout: float | None = None  # dropout on attention weights; None = same as dropout
    initializer_range: float = 0.02  # std of the normal init of Linear/Embedding weights

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "max_position", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"BertConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(
                f"BertConfig.hidden_size={self.hidden_size} is not divisible by "
                f"num_heads={self.num_heads}: each head gets hidden_size / num_heads features"
            )
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"BertConfig.{name} must be in [0, 1), got {value!r}")
        if self.layer_norm_eps <= 0 or self.initializer_range <= 0:
            raise ValueError(
                "BertConfig.layer_norm_eps and initializer_range must be positive, got "
                f"{self.layer_norm_eps!r}, {self.initializer_range!r}"
            )

    @classmethod
    def from_hf(cls, hf_config: Any, **overrides: Any) -> BertConfig:
        """The :class:`BertConfig` of a Hugging Face ``transformers.BertConfig``.

        Raises ValueError for what this implementation does not have: an activation other than
        exact GELU, relative position embeddings, decoder/cross-attention use, untied MLM decoder.
        ``overrides`` set our own fields (e.g. ``fused_attention=False``).
        """
        act = getattr(hf_config, "hidden_act", "gelu")
        if act != "gelu":
            raise ValueError(
                f"unsupported hidden_act={act!r}: mlstep's BERT uses the exact (erf) GELU, 'gelu'"
            )
        pos = getattr(hf_config, "position_embedding_type", "absolute")
        if pos != "absolute":
            raise ValueError(
                f"unsupported position_embedding_type={pos!r}: only learned absolute position "
                "embeddings are implemented"
            )
        if getattr(hf_config, "is_decoder", False) or getattr(hf_config, "add_cross_attention", False):
            raise ValueError("unsupported: is_decoder/add_cross_attention (mlstep's BERT is an encoder)")
        if not getattr(hf_config, "tie_word_embeddings", True):
            raise ValueError(
                "unsupported: tie_word_embeddings=False (the MLM decoder here always shares the "
                "word-embedding matrix)"
            )
        fields = dict(
            vocab_size=hf_config.vocab_size,
            hidden_size=hf_config.hidden_size,
            num_layers=hf_config.num_hidden_layers,
            num_heads=hf_config.num_attention_heads,
            intermediate_size=hf_config.intermediate_size,
            max_position=hf_config.max_position_embeddings,
            type_vocab_size=hf_config.type_vocab_size,
            dropout=float(hf_config.hidden_dropout_prob),
            attention_dropout=float(hf_config.attention_probs_dropout_prob),
            layer_norm_eps=float(hf_config.layer_norm_eps),
            initializer_range=float(getattr(hf_config, "initializer_range", 0.02)),
        )
        return cls(**{**fields, **overrides})

    def replace(self, **changes: Any) -> BertConfig:
        """A copy with some fields changed (the config is frozen)."""
        return dataclasses.replace(self, **changes)


def _init_weights(module: nn.Module, std: float) -> None:
    """BERT's init: normal(0, std) for Linear/Embedding weights, zero biases, LayerNorm 1/0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _check_ids(name: str, ids: Tensor, shape: torch.Size | None, high: int, field: str) -> None:
    """Integer tensor of the expected shape with values in [0, high)."""
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got dtype {ids.dtype}")
    if shape is not None and ids.shape != shape:
        raise ValueError(f"{name} must have the shape of input_ids {tuple(shape)}, got {tuple(ids.shape)}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= high):
        raise ValueError(
            f"{name} must be in [0, {field}={high}), got values in "
            f"[{int(ids.min())}, {int(ids.max())}]"
        )


class BertEmbeddings(nn.Module):
    """``LayerNorm(word[ids] + position[0..n-1] + token_type[segments])``, then dropout.

    Attention is blind to order, so the position embedding is what tells the model where each
    token is; the token-type (segment) embedding tells sentence A from sentence B.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        """``input_ids, token_type_ids (b, n)`` → embeddings ``(b, n, H)`` (inputs already checked)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (n,)
        x = (
            self.word_embeddings(input_ids)  # (b, n, H)
            + self.position_embeddings(positions)  # (n, H), broadcast over the batch
            + self.token_type_embeddings(token_type_ids)  # (b, n, H)
        )
        return self.dropout(self.LayerNorm(x))  # (b, n, H)


class BertPooler(nn.Module):
    """``tanh(dense(h[CLS]))``: the sequence summary the NSP and classification heads read."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (b, n, H) -> [CLS] (b, H)


class BertOutput(NamedTuple):
    """What :class:`BertModel` returns.

    Attributes:
        last_hidden_state: ``(b, n, H)``, the encoder output at every position.
        pooled_output: ``(b, H)``, ``tanh(dense(last_hidden_state[:, 0]))`` (the [CLS] position).
        hidden_states: None unless ``output_hidden_states``; else ``num_layers + 1`` tensors
            ``(b, n, H)``: the embeddings, then each layer's output.
    """

    last_hidden_state: Tensor
    pooled_output: Tensor
    hidden_states: tuple[Tensor, ...] | None


class BertModel(nn.Module):
    """BERT encoder: embeddings → transformer encoder → pooler.

    Args:
        config: a :class:`BertConfig`.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be a mlstep.BertConfig, got {type(config).__name__}")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = TransformerEncoder(
            config.num_layers, config.hidden_size, config.num_heads, config.intermediate_size,
            dropout=config.dropout, pre_norm=config.pre_norm, layer_norm_eps=config.layer_norm_eps,
            fused_attention=config.fused_attention, attention_dropout=config.attention_dropout,
        )
        self.pooler = BertPooler(config)
        self.apply(lambda m: _init_weights(m, config.initializer_range))

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> BertOutput:
        """Encode a batch of token ids.

        Args:
            input_ids: ``(b, n)`` integer token ids in ``[0, vocab_size)``, ``n <= max_position``.
            token_type_ids: ``(b, n)`` segment ids in ``[0, type_vocab_size)``; default all 0.
            attention_mask: ``(b, n)`` with 1/True = real token, 0/False = padding (padding keys
                get no attention); default: every position is real. Each row needs a real token.
            output_hidden_states: also return the embeddings and every layer's output.

        Returns:
            :class:`BertOutput` ``(last_hidden_state (b, n, H), pooled_output (b, H),
            hidden_states or None)``.
        """
        cfg = self.config
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq_len), got shape {tuple(input_ids.shape)}")
        if input_ids.shape[1] > cfg.max_position:
            raise ValueError(
                f"sequence length {input_ids.shape[1]} is longer than max_position="
                f"{cfg.max_position} (the size of the position-embedding table); truncate the input"
            )
        if input_ids.shape[1] == 0:
            raise ValueError("input_ids has no positions (seq_len 0); [CLS] is needed for pooling")
        _check_ids("input_ids", input_ids, None, cfg.vocab_size, "vocab_size")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        else:
            _check_ids("token_type_ids", token_type_ids, input_ids.shape, cfg.type_vocab_size,
                       "type_vocab_size")
        mask = None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)} "
                    f"(1 = real token, 0 = padding), got {tuple(attention_mask.shape)}"
                )
            if attention_mask.dtype != torch.bool and ((attention_mask != 0) & (attention_mask != 1)).any():
                raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token)")
            if not attention_mask.bool().any(dim=1).all():
                raise ValueError("attention_mask has a row with no real token (all zeros)")
            mask = padding_mask(attention_mask)  # (b, 1, 1, n): every query may see real keys

        x = self.embeddings(input_ids, token_type_ids)  # (b, n, H)
        hidden, states = self.encoder(x, mask=mask, output_hidden_states=output_hidden_states)
        return BertOutput(hidden, self.pooler(hidden), states)


class BertLMPredictionHead(nn.Module):
    """MLM head: ``decoder(LayerNorm(GELU(dense(h)))) + bias`` → vocabulary logits.

    The decoder's weight **is** the word-embedding matrix (tied: the same Parameter), which saves
    ``V × H`` parameters and ties "which vector means this token" at the input and the output.
    The head has its own bias ``(V,)``.
    """

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = nn.Sequential()  # named like HF: transform.dense, transform.LayerNorm
        self.transform.add_module("dense", nn.Linear(config.hidden_size, config.hidden_size))
        self.transform.add_module("act", nn.GELU())
        self.transform.add_module(
            "LayerNorm", nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        )
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.decoder.weight = word_embeddings.weight  # tie: one Parameter, two uses
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: Tensor) -> Tensor:
        """``hidden (..., H)`` → logits ``(..., V)``."""
        return self.decoder(self.transform(hidden)) + self.bias


class PreTrainingOutput(NamedTuple):
    """What :class:`BertForPreTraining` returns.

    Attributes:
        loss: None without labels; else MLM cross-entropy (mean over masked positions), plus the
            NSP cross-entropy when ``nsp_labels`` are given.
        mlm_logits: without ``mlm_labels``: ``(b, n, V)`` at every position. **With**
            ``mlm_labels``: ``(m, V)``, only the ``m`` masked positions, in row-major order of
            ``mlm_labels != -100`` (i.e. ``logits[i]`` predicts ``mlm_labels[mlm_labels != -100][i]``).
        nsp_logits: ``(b, 2)``; class 0 = B follows A, class 1 = B is random (HF's convention).
    """

    loss: Tensor | None
    mlm_logits: Tensor
    nsp_logits: Tensor


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Masked-LM cross-entropy, averaged over positions whose label is not −100.

    ``logits (..., V)`` and ``labels (...)`` (full ``(b, n, V)`` / ``(b, n)``, or gathered
    ``(m, V)`` / ``(m,)``). With no target at all it returns 0 (with a graph), not NaN.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"mlm logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match "
            "(logits must be labels.shape + (vocab_size,))"
        )
    flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    if flat_labels.numel() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX)


def nsp_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Next-sentence-prediction cross-entropy: ``logits (b, 2)``, ``labels (b,)`` in {0, 1}."""
    if logits.dim() != 2 or logits.shape[1] != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"nsp logits must be (batch, 2) and labels (batch,), got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    return F.cross_entropy(logits, labels)


class BertForPreTraining(nn.Module):
    """BERT with its two pretraining heads: masked-LM (``predictions``) and NSP (``seq_relationship``).

    With ``mlm_labels`` the hidden states at masked positions are gathered **before** the MLM
    head, so the ``H → V`` projection runs on ~15 % of the positions instead of all of them (the
    largest matmul of a small model with a real vocabulary); ``mlm_logits`` is then ``(m, V)``.

    Args:
        config: a :class:`BertConfig`.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config)  # initialises itself
        self.predictions = BertLMPredictionHead(config, self.bert.embeddings.word_embeddings)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)  # NSP: on the pooled [CLS]
        # Initialise the heads only (their decoder weight is the already-initialised embedding).
        for head in (self.predictions.transform, self.seq_relationship):
            head.apply(lambda m: _init_weights(m, config.initializer_range))

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        mlm_labels: Tensor | None = None,
        nsp_labels: Tensor | None = None,
    ) -> PreTrainingOutput:
        """Forward pass, with losses when labels are given.

        Args:
            input_ids, token_type_ids, attention_mask: as in :meth:`BertModel.forward`.
            mlm_labels: optional ``(b, n)``; the original token id at masked positions, −100
                elsewhere. When given, ``mlm_logits`` covers only the masked positions ``(m, V)``
                (row-major order of ``mlm_labels != -100``).
            nsp_labels: optional ``(b,)`` in {0, 1}: 0 = B follows A, 1 = B is random.

        Returns:
            :class:`PreTrainingOutput` ``(loss or None, mlm_logits, nsp_logits (b, 2))``.
        """
        V = self.config.vocab_size
        if mlm_labels is not None:
            if mlm_labels.dtype.is_floating_point or mlm_labels.dtype == torch.bool:
                raise TypeError(f"mlm_labels must be an integer tensor, got dtype {mlm_labels.dtype}")
            if mlm_labels.shape != input_ids.shape:
                raise ValueError(
                    f"mlm_labels must have the shape of input_ids {tuple(input_ids.shape)}, got "
                    f"{tuple(mlm_labels.shape)}"
                )
            bad = (mlm_labels != IGNORE_INDEX) & ((mlm_labels < 0) | (mlm_labels >= V))
            if bad.any():
                raise ValueError(
                    f"mlm_labels must be in [0, vocab_size={V}) or -100 (not masked), got "
                    f"{sorted(set(mlm_labels[bad].tolist()))[:5]}"
                )
        if nsp_labels is not None:
            if nsp_labels.dtype.is_floating_point or nsp_labels.dtype == torch.bool:
                raise TypeError(f"nsp_labels must be an integer tensor, got dtype {nsp_labels.dtype}")
            if nsp_labels.shape != input_ids.shape[:1]:
                raise ValueError(
                    f"nsp_labels must be (batch,) = {tuple(input_ids.shape[:1])}, got "
                    f"{tuple(nsp_labels.shape)}"
                )
            if ((nsp_labels != 0) & (nsp_labels != 1)).any():
                raise ValueError("nsp_labels must be 0 (B follows A) or 1 (B is random)")

        hidden, pooled, _ = self.bert(input_ids, token_type_ids, attention_mask)  # (b,n,H), (b,H)
        nsp_logits = self.seq_relationship(pooled)  # (b, 2)

        loss = None
        if mlm_labels is None:
            mlm_logits = self.predictions(hidden)  # (b, n, V)
        else:
            selected = mlm_labels != IGNORE_INDEX  # (b, n)
            # Gather first, then project: (b, n, H) -> (m, H) -> (m, V).
            mlm_logits = self.predictions(hidden[selected])
            loss = mlm_loss(mlm_logits, mlm_labels[selected].long())
        if nsp_labels is not None:
            nsp = nsp_loss(nsp_logits, nsp_labels.long())
            loss = nsp if loss is None else loss + nsp
        return PreTrainingOutput(loss, mlm_logits, nsp_logits)


@torch.no_grad()
def bert_from_hf(hf_model: Any, **overrides: Any) -> BertForPreTraining:
    """Build a :class:`BertForPreTraining` holding a copy of a Hugging Face model's weights.

    Args:
        hf_model: a ``transformers.BertForPreTraining`` (any size, e.g.
            ``BertForPreTraining.from_pretrained("bert-base-uncased")``).
        overrides: :class:`BertConfig` fields to set, e.g. ``fused_attention=False``.

    Returns:
        The model, on the HF model's device and dtype, in the HF model's train/eval mode. Its
        outputs equal the HF model's (same inputs, eval mode) to float32 rounding.
    """
    if not (hasattr(hf_model, "bert") and hasattr(getattr(hf_model, "cls", None), "seq_relationship")):
        raise TypeError(
            f"expected a transformers.BertForPreTraining (with .bert and .cls.seq_relationship), "
            f"got {type(hf_model).__name__}"
        )
    config = BertConfig.from_hf(hf_model.config, **overrides)
    model = BertForPreTraining(config)
    hb, hc = hf_model.bert, hf_model.cls

    def copy(dst: nn.Module, src: nn.Module) -> None:
        dst.weight.copy_(src.weight)
        if getattr(dst, "bias", None) is not None:
            dst.bias.copy_(src.bias)

    emb = model.bert.embeddings
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm"):
        copy(getattr(emb, name), getattr(hb.embeddings, name))
    for ours, theirs in zip(model.bert.encoder.layers, hb.encoder.layer, strict=True):
        attn = theirs.attention
        copy(ours.self_attn.q_proj, attn.self.query)
        copy(ours.self_attn.k_proj, attn.self.key)
        copy(ours.self_attn.v_proj, attn.self.value)
        copy(ours.self_attn.out_proj, attn.output.dense)
        copy(ours.norm1, attn.output.LayerNorm)
        copy(ours.ffn.fc1, theirs.intermediate.dense)
        copy(ours.ffn.fc2, theirs.output.dense)
        copy(ours.norm2, theirs.output.LayerNorm)
    copy(model.bert.pooler.dense, hb.pooler.dense)

    preds = hc.predictions
    copy(model.predictions.transform.dense, preds.transform.dense)
    copy(model.predictions.transform.LayerNorm, preds.transform.LayerNorm)
    if not torch.equal(preds.decoder.weight, hb.embeddings.word_embeddings.weight):
        raise ValueError("the HF model's MLM decoder weight is not tied to its word embeddings")
    bias = preds.decoder.bias if preds.decoder.bias is not None else preds.bias
    model.predictions.bias.copy_(bias)
    copy(model.seq_relationship, hc.seq_relationship)

    ref = hb.embeddings.word_embeddings.weight
    model = model.to(device=ref.device, dtype=ref.dtype)
    return model.train(hf_model.training)
