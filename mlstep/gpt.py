"""GPT from scratch: a decoder-only transformer that predicts the next token, GPT-2 weights loaded
into it, and a classifier on top of it.

A GPT is the stack BERT uses — the same :class:`~mlstep.Transformer` — with three settings changed
(``pre_norm=True, causal=True, gelu="tanh"``) and a different head::

    ids (B, T) → wte[ids] + wpe[positions] → dropout → Transformer (pre-LN, causal) → lm_head → logits (B, T, V)

The objective is L = −Σ_t log P(x_t | x_<t): the logits at position t predict token t + 1, so the
labels are the input ids themselves, shifted by one inside :meth:`GPT.forward`. The causal mask
(each position attends to itself and the positions before it) makes every position a training
example in one forward pass, and lets generation keep the keys and values of the tokens already
seen instead of recomputing them (the KV cache, :mod:`mlstep.generation`).

Module names follow Hugging Face's GPT-2 where that maps checkpoints onto ours (``wte``, ``wpe``,
``lm_head``); the blocks are our ``Transformer``, called ``decoder``. Shapes follow the package legend.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlstep.attention import padding_mask
from mlstep.config import TransformerConfig
from mlstep.tools.checks import check_ids, check_rows
from mlstep.tools.runtime import IGNORE_INDEX
from mlstep.transformer import (
    Backbone,
    ClassifierOutput,
    Transformer,
    classifier_layers,
    init_weights,
)

__all__ = ["GPTConfig", "GPT", "GPTOutput", "next_token_targets", "lm_step", "gpt_from_hf",
           "GPTForSequenceClassification"]


@dataclass(frozen=True, kw_only=True)
class GPTConfig(TransformerConfig):
    """A GPT: a pre-LN, causal :class:`~mlstep.TransformerConfig` plus vocabulary and positions.

    The defaults are the course's tiny CPU model. GPT-2 small (124 M parameters) is
    ``GPTConfig(50257, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
    max_position=1024, dropout=0.1)``.
    """

    vocab_size: int = field(kw_only=False)  # V: token ids, the special tokens included
    max_position: int = 128  # longest sequence (prompt + generated tokens): rows of ``wpe``
    layer_norm_eps: float = 1e-5  # GPT-2's
    pre_norm: bool = True  # GPT-2 normalises before each sub-layer, then once after the stack
    causal: bool = True  # a decoder: position t sees positions <= t only
    gelu: str = "tanh"  # GPT-2's GELU approximation ("gelu_new")
    initializer_range: float = 0.02  # std of the normal initialisation of every weight

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.causal:
            raise ValueError("GPTConfig.causal must be True: a GPT predicts each token from the ones before it")

    @classmethod
    def from_hf(cls, hf_config: Any, **overrides: Any) -> GPTConfig:
        """The config of a Hugging Face ``transformers.GPT2Config``; ``overrides`` set our own fields."""
        gelu = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}.get(hf_config.activation_function)
        if gelu is None:
            raise ValueError(f"unsupported activation_function={hf_config.activation_function!r}: "
                             "mlstep's GPT has GELU (exact or tanh)")
        unsupported = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
                       "add_cross_attention": False, "tie_word_embeddings": True}
        for key, ours in unsupported.items():
            theirs = getattr(hf_config, key, ours)
            if theirs != ours:
                raise ValueError(f"unsupported {key}={theirs!r}: mlstep's GPT has {key}={ours!r}")
        D = hf_config.n_embd
        fields = dict(hidden_size=D, num_layers=hf_config.n_layer, num_heads=hf_config.n_head,
                      intermediate_size=hf_config.n_inner or 4 * D, max_position=hf_config.n_positions,
                      layer_norm_eps=hf_config.layer_norm_epsilon, dropout=float(hf_config.resid_pdrop),
                      gelu=gelu, initializer_range=hf_config.initializer_range)
        return cls(hf_config.vocab_size, **{**fields, **overrides})


class GPTOutput(NamedTuple):
    loss: Tensor | None  # None without labels; else the mean next-token cross-entropy
    logits: Tensor  # (B, T, V): position t's scores for token t + 1; with labels (M, V), see forward


def next_token_targets(labels: Tensor) -> Tensor:
    """``labels (B, T)`` → the targets of each position ``(B, T)``: ``targets[:, t] = labels[:, t + 1]``,
    and −100 at the last position, which has no next token."""
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


def padded_causal_mask(attention_mask: Tensor, t: int) -> Tensor:
    """``attention_mask (B, S)`` → ``(B, 1, T, S)`` for the last ``t`` of ``S`` positions: the real
    keys, and each query's own position (attention adds the causal part).

    A padding query on the left has no real key before it; without its own position its row of
    the mask would be empty, PyTorch's fused kernel would return NaN there, and the NaN would reach
    every later token through the values (0 · NaN = NaN). Attending to itself keeps it finite.
    """
    S = attention_mask.shape[1]
    positions = torch.arange(S, device=attention_mask.device)  # (S,)
    itself = positions == positions[S - t:, None]  # (T, S): query i is position S - t + i
    return padding_mask(attention_mask) | itself


class GPT(nn.Module):
    """Token + position embeddings → :class:`~mlstep.Transformer` (``decoder``) → ``lm_head``.

    The LM head *is* the token-embedding matrix (tied, as in GPT-2): the logit of token v is the
    dot product of the final hidden state with v's input embedding.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a mlstep.GPTConfig, got {type(config).__name__}")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)  # token embeddings
        self.wpe = nn.Embedding(config.max_position, config.hidden_size)  # learned positions
        self.drop = nn.Dropout(config.dropout)
        self.decoder = Transformer(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: one Parameter, two uses
        self.apply(lambda m: init_weights(m, config.initializer_range))
        for block in self.decoder.layers:  # GPT-2: each residual branch's output layer scaled by
            for proj in (block.attn.out_proj, block.ffn.fc2):  # 1/√(2L), so the stream's variance
                nn.init.normal_(proj.weight, std=config.initializer_range / math.sqrt(2 * config.num_layers))

    def backbone(self) -> Backbone:
        """What strategies act on: the token and position embeddings and the ``decoder`` stack."""
        return Backbone(self, [self.wte, self.wpe], self.decoder, [])

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                      caches: list[dict] | None = None) -> list[Tensor]:
        """The L + 1 hidden states ``(B, T, D)`` of the decoder (arguments as :meth:`forward`)."""
        cfg = self.config
        check_ids("input_ids", input_ids, cfg.vocab_size, "vocab_size")
        past = caches[0]["k"].shape[2] if caches and caches[0] else 0  # positions already cached
        if input_ids.dim() != 2 or input_ids.shape[1] == 0 or past + input_ids.shape[1] > cfg.max_position:
            raise ValueError(f"input_ids must be (batch, seq_len) with 0 < {past} cached + seq_len <= "
                             f"max_position={cfg.max_position}, got {tuple(input_ids.shape)}")
        B, T = input_ids.shape
        mask = None
        if attention_mask is None:
            positions = torch.arange(past, past + T, device=input_ids.device)  # (T,)
        else:
            check_rows("attention_mask", attention_mask, (B, past + T))
            positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, past:]  # (B, T): real tokens count from 0
            mask = padded_causal_mask(attention_mask, T)  # (B, 1, T, past + T)
        x = self.drop(self.wte(input_ids) + self.wpe(positions))  # (B, T, D)
        return self.decoder(x, mask, caches)

    def forward(self, input_ids: Tensor, labels: Tensor | None = None, *,
                attention_mask: Tensor | None = None, caches: list[dict] | None = None) -> GPTOutput:
        """Next-token logits for ``input_ids (B, T)``, and the loss when ``labels`` are given.

        ``labels (B, T)``: the ids to predict, usually ``input_ids`` itself, −100 where no loss is
        wanted (padding, a prompt); position t is scored on ``labels[:, t + 1]``. With labels, the
        D → V projection runs only at the M positions that have a target, and ``logits`` is
        ``(M, V)``: row i predicts ``next_token_targets(labels)[targets != -100][i]`` (a fine-tuning
        batch whose prompts carry no loss then skips most of the largest matrix product).
        ``attention_mask (B, S)``, 1 = real token, 0 = padding, over the cached positions and these
        (S = cached + T): only needed when prompts are padded on the *left* (generation); a real
        token never sees the padding on its right, and positions count real tokens only.
        ``caches``: one dict per block, extended in place with these positions' keys and values.
        """
        if labels is not None:
            check_ids("labels", labels, self.config.vocab_size, "vocab_size", shape=input_ids.shape,
                      ignore=IGNORE_INDEX)
            if not (labels[:, 1:] != IGNORE_INDEX).any():
                raise ValueError("labels have no target after position 0: nothing to predict")
        hidden = self.hidden_states(input_ids, attention_mask, caches)[-1]  # (B, T, D)
        if labels is None:
            return GPTOutput(None, self.lm_head(hidden))  # (B, T, V)
        targets = next_token_targets(labels)  # (B, T)
        chosen = targets != IGNORE_INDEX  # (B, T): positions with a next token to predict
        logits = self.lm_head(hidden[chosen])  # (M, D) -> (M, V)
        return GPTOutput(F.cross_entropy(logits, targets[chosen]), logits)


def lm_step(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """A ``step_fn`` for :func:`mlstep.train`: the next-token loss on ``input_ids``, with
    ``labels`` when the batch has them (−100 on a prompt and padding), else the ids themselves."""
    return model(batch["input_ids"], batch.get("labels", batch["input_ids"])).loss


@torch.no_grad()
def gpt_from_hf(hf_model: Any, **overrides: Any) -> GPT:
    """Our :class:`GPT` with a copy of a Hugging Face ``GPT2LMHeadModel``'s weights.

    ``gpt_from_hf(GPT2LMHeadModel.from_pretrained("gpt2"))`` loads real GPT-2 into the model you
    built; logits equal the Hugging Face model's to float32 rounding. GPT-2 stores its linear layers
    as ``Conv1D`` with the weight as ``(in, out)`` and Q, K, V side by side in one ``c_attn``:
    they are transposed and split. ``overrides`` set :class:`GPTConfig` fields (e.g. ``dropout=0.0``).
    """
    if not (hasattr(getattr(hf_model, "transformer", None), "wte") and hasattr(hf_model, "lm_head")):
        raise TypeError(f"expected a transformers.GPT2LMHeadModel, got {type(hf_model).__name__}")
    model = GPT(GPTConfig.from_hf(hf_model.config, **overrides))
    hf = hf_model.transformer

    def copy_conv1d(ours: nn.Linear, weight: Tensor, bias: Tensor) -> None:
        ours.weight.copy_(weight.t())  # Conv1D (in, out) -> Linear (out, in)
        ours.bias.copy_(bias)

    model.wte.weight.copy_(hf.wte.weight)
    model.wpe.weight.copy_(hf.wpe.weight)
    for ours, theirs in zip(model.decoder.layers, hf.h, strict=True):
        D = model.config.hidden_size
        for i, proj in enumerate((ours.attn.q_proj, ours.attn.k_proj, ours.attn.v_proj)):
            copy_conv1d(proj, theirs.attn.c_attn.weight[:, i * D:(i + 1) * D], theirs.attn.c_attn.bias[i * D:(i + 1) * D])
        for dst, src in ((ours.attn.out_proj, theirs.attn.c_proj), (ours.ffn.fc1, theirs.mlp.c_fc),
                         (ours.ffn.fc2, theirs.mlp.c_proj)):
            copy_conv1d(dst, src.weight, src.bias)
        ours.norm1.load_state_dict(theirs.ln_1.state_dict())
        ours.norm2.load_state_dict(theirs.ln_2.state_dict())
    model.decoder.final_norm.load_state_dict(hf.ln_f.state_dict())
    ref = hf.wte.weight
    return model.to(device=ref.device, dtype=ref.dtype).train(hf_model.training)


class GPTForSequenceClassification(nn.Module):
    """A GPT with a linear classifier on the hidden state of each sequence's *last real token*.

    BERT classifies from ``[CLS]``, which attends to every token; in a causal model only the last
    token has seen the whole text. Batches are padded on the right, which a causal model needs no
    mask for: a real token never attends to the padding after it.
    """

    def __init__(self, config_or_gpt: GPTConfig | GPT, num_labels: int, dropout: float = 0.1):
        super().__init__()
        # a config builds a randomly initialised GPT ("from scratch"); a GPT is used as is
        self.gpt = config_or_gpt if isinstance(config_or_gpt, GPT) else GPT(config_or_gpt)
        self.num_labels = num_labels
        self.dropout, self.classifier = classifier_layers(self.gpt.config.hidden_size, num_labels, dropout,
                                                          self.gpt.config.initializer_range)

    @classmethod
    def from_pretrained(cls, gpt: GPT, num_labels: int, **kwargs: Any) -> GPTForSequenceClassification:
        """A new head on a *copy* of ``gpt``: fine-tuning leaves the pretrained model untouched."""
        return cls(copy.deepcopy(gpt), num_labels, **kwargs)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                labels: Tensor | None = None, token_type_ids: Tensor | None = None) -> ClassifierOutput:
        """``input_ids (B, T)`` padded on the right; ``attention_mask (B, T)``, 1 = real token
        (default: no padding); ``labels (B,)`` in ``[0, C)``. ``token_type_ids`` may only be zeros
        (a GPT reads one segment): it is accepted so that :mod:`mlstep.tasks.labeled` batches fit."""
        if token_type_ids is not None and token_type_ids.any():
            raise ValueError("a GPT has no segments: token_type_ids must be None or all 0")
        if labels is not None:
            check_ids("labels", labels, self.num_labels, "num_labels", shape=input_ids.shape[:1])
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        check_rows("attention_mask", attention_mask, input_ids.shape)
        if (attention_mask[:, 1:] > attention_mask[:, :-1]).any():
            raise ValueError("attention_mask has padding before a real token: pad on the right for classification")
        hidden = self.gpt.hidden_states(input_ids)[-1]  # (B, T, D)
        last = attention_mask.sum(dim=1) - 1  # (B,): index of the last real token
        pooled = hidden[torch.arange(len(last), device=hidden.device), last]  # (B, D)
        logits = self.classifier(self.dropout(pooled))  # (B, C)
        return ClassifierOutput(None if labels is None else F.cross_entropy(logits, labels), logits)
