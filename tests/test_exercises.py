"""mlstep.exercises: every check passes the reference and names each typical mistake."""

import copy
import functools
import json
import math
import random

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mlstep import (
    BertModel,
    MultiHeadAttention,
    TransformerConfig,
    count_parameters,
    distillation_loss,
    mask_tokens,
    nsp_pairs,
    scaled_dot_product_attention,
    sop_pairs,
)
from mlstep.exercises import (
    CHECKS,
    MERGE_HEADS,
    REPORT_ENV,
    SPLIT_HEADS,
    check_attention,
    check_attention_weights,
    check_bert_parameter_count,
    check_causal_mask,
    check_distillation_loss,
    check_freeze_encoder,
    check_lora_linear,
    check_mask_tokens,
    check_merge_heads,
    check_mlm_loss,
    check_nsp_pairs,
    check_soft_targets,
    check_sop_pairs,
    check_split_heads,
    check_wordpiece,
)
from mlstep.finetune import freeze_encoder

try:  # mlstep.lora is the reference of check_lora_linear when present
    from mlstep.lora import LoRALinear
except ImportError:  # pragma: no cover
    LoRALinear = None


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The checks' tensors are tiny: one thread avoids OpenMP spinning on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(check, fn, capsys):
    """Run a check; return (result, the one line it printed)."""
    result = check(fn)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    return result, lines[0]


# --- learner functions: the reference answers and the typical wrong ones -------------------------

def _scores(q, k):
    return q @ k.transpose(-2, -1)


def weights_ok(q, k, mask=None):
    s = _scores(q, k) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return s.softmax(dim=-1)


def weights_ok_finite_fill(q, k, mask=None):  # -1e9 instead of -inf is fine too
    s = (q / math.sqrt(q.shape[-1])) @ k.transpose(-2, -1)
    if mask is not None:
        s = s.masked_fill(mask == 0, -1e9)
    return torch.exp(s - s.amax(-1, keepdim=True)) / torch.exp(s - s.amax(-1, keepdim=True)).sum(-1, keepdim=True)


def weights_unscaled(q, k, mask=None):
    s = _scores(q, k)
    return (s if mask is None else s.masked_fill(~mask, float("-inf"))).softmax(-1)


def weights_by_dk(q, k, mask=None):
    s = _scores(q, k) / q.shape[-1]
    return (s if mask is None else s.masked_fill(~mask, float("-inf"))).softmax(-1)


def weights_wrong_axis(q, k, mask=None):
    s = _scores(q, k) / math.sqrt(q.shape[-1])
    return (s if mask is None else s.masked_fill(~mask, float("-inf"))).softmax(-2)


def weights_mask_ignored(q, k, mask=None):
    return (_scores(q, k) / math.sqrt(q.shape[-1])).softmax(-1)


def weights_mask_after_softmax(q, k, mask=None):
    w = (_scores(q, k) / math.sqrt(q.shape[-1])).softmax(-1)
    return w if mask is None else w.masked_fill(~mask, 0.0)


def weights_mask_inverted(q, k, mask=None):
    s = _scores(q, k) / math.sqrt(q.shape[-1])
    return (s if mask is None else s.masked_fill(mask, float("-inf"))).softmax(-1)


def weights_mask_inverted_finite(q, k, mask=None):
    s = _scores(q, k) / math.sqrt(q.shape[-1])
    return (s if mask is None else s.masked_fill(mask, -1e9)).softmax(-1)


def weights_dot_T(q, k, mask=None):  # `.T` reverses every dimension of a batched tensor
    return (q @ k.T / math.sqrt(q.shape[-1])).softmax(-1)


def weights_in_place(q, k, mask=None):
    q /= math.sqrt(q.shape[-1])
    return weights_ok(q * math.sqrt(q.shape[-1]), k, mask)


def weights_float32(q, k, mask=None):
    return weights_ok(q.float(), k.float(), mask)


def not_implemented(*args, **kwargs):
    raise NotImplementedError("Exercise: write this part")


def attention_ok(q, k, v, mask=None):
    return weights_ok(q, k, mask) @ v


def attention_tuple(q, k, v, mask=None):
    return scaled_dot_product_attention(q, k, v, mask=mask)  # (out, weights) is accepted


def split_ok(x, num_heads):
    b, n, f = x.shape
    return x.view(b, n, num_heads, f // num_heads).transpose(1, 2)


def merge_ok(x):
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def causal_ok(n):
    return torch.ones(n, n, dtype=torch.bool).tril()


# --- chapter 03: WordPiece and the parameter count -------------------------------------------------

def wordpiece(word, vocab, *, shortest=False, hash_rest=True, hash_first=False, keep_hash=True, on_miss="unk"):
    """Greedy WordPiece as a learner writes it; the keyword arguments reproduce typical mistakes."""
    pieces, start = [], 0
    while start < len(word):
        ends = range(start + 1, len(word) + 1) if shortest else range(len(word), start, -1)
        match = None
        for end in ends:
            piece = word[start:end]
            if (start > 0 and hash_rest) or (start == 0 and hash_first):
                piece = "##" + piece
            if piece in vocab:
                match = piece
                break
        if match is None:
            if on_miss == "stop":
                return pieces + ["[UNK]"]
            if on_miss == "skip":
                pieces.append("[UNK]")
                start += 1
                continue
            return ["[UNK]"]
        pieces.append(match if keep_hash else match.removeprefix("##"))
        start = end
    return pieces


def wordpiece_recursive(word, vocab, first=True):  # another correct style
    if not word:
        return []
    for end in range(len(word), 0, -1):
        piece = word[:end] if first else "##" + word[:end]
        if piece in vocab:
            rest = wordpiece_recursive(word[end:], vocab, first=False)
            return ["[UNK]"] if rest == ["[UNK]"] else [piece] + rest
    return ["[UNK]"]


def bert_count(config, *, layer_norms=True, biases=True, positions=True, segments=True, pooler=True,
               final_norm=True, per_layer=True):
    H, F_, L = config.hidden_size, config.intermediate_size, config.num_layers
    ln = 2 * H if layer_norms else 0
    b = 1 if biases else 0
    embeddings = config.vocab_size * H + ln
    embeddings += config.max_position * H if positions else 0
    embeddings += config.type_vocab_size * H if segments else 0
    attention = 4 * (H * H + b * H)
    ffn = H * F_ + b * F_ + F_ * H + b * H
    layer = attention + ffn + 2 * ln
    total = embeddings + (L if per_layer else 1) * layer
    if config.pre_norm and final_norm:
        total += ln
    if pooler:
        total += H * H + b * H
    return total


# --- chapters 04-05: masking, MLM loss, NSP pairs ----------------------------------------------------

def mask_tokens_hf(input_ids, vocab_size, mask_id, special_ids, generator, *, p=0.15, p_mask=0.8, p_random=0.5,
                   mask_specials=False, label_all=False, unchosen_label=-100, labels_from_inputs=False,
                   randomise_unchosen=False, global_rng=False, in_place=False):
    """Hugging Face's DataCollatorForLanguageModeling, written out; the keywords are typical mistakes."""
    gen = None if global_rng else generator
    inputs = input_ids if in_place else input_ids.clone()
    labels = input_ids.clone()
    prob = torch.full(input_ids.shape, p)
    if not mask_specials:
        prob[torch.isin(input_ids, torch.tensor(special_ids))] = 0.0
    chosen = torch.bernoulli(prob, generator=gen).bool()
    if not label_all:
        labels[~chosen] = unchosen_label
    replaced = torch.bernoulli(torch.full(input_ids.shape, p_mask), generator=gen).bool() & chosen
    inputs[replaced] = mask_id
    randomised = torch.bernoulli(torch.full(input_ids.shape, p_random), generator=gen).bool() & ~replaced
    if not randomise_unchosen:
        randomised &= chosen
    words = torch.randint(vocab_size, input_ids.shape, generator=gen)
    inputs[randomised] = words[randomised]
    if labels_from_inputs:
        labels = torch.where(chosen, inputs, labels)
    return inputs, labels


def mask_tokens_uniform(input_ids, vocab_size, mask_id, special_ids, generator):  # one uniform per position
    u = torch.rand(input_ids.shape, generator=generator)
    chosen = (u < 0.15) & ~torch.isin(input_ids, torch.tensor(special_ids))
    v = torch.rand(input_ids.shape, generator=generator)
    normal = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
    words = normal[torch.randint(len(normal), input_ids.shape, generator=generator)]
    inputs = torch.where(chosen & (v < 0.8), mask_id, input_ids)
    inputs = torch.where(chosen & (v >= 0.8) & (v < 0.9), words, inputs)
    return inputs, torch.where(chosen, input_ids, -100)


def mask_tokens_15_percent_masked(input_ids, vocab_size, mask_id, special_ids, generator):
    """15 % of the tokens become [MASK], then 10 %/10 % of that again random/kept: 18.75 % chosen."""
    u = torch.rand(input_ids.shape, generator=generator)
    u[torch.isin(input_ids, torch.tensor(special_ids))] = 1.0
    inputs = torch.where(u < 0.15, mask_id, input_ids)
    words = torch.randint(5, vocab_size - 1, input_ids.shape, generator=generator)
    inputs = torch.where((u >= 0.15) & (u < 0.16875), words, inputs)
    return inputs, torch.where(u < 0.1875, input_ids, -100)


def mask_tokens_partly_global(input_ids, vocab_size, mask_id, special_ids, generator):
    inputs, labels = mask_tokens_hf(input_ids, vocab_size, mask_id, special_ids, generator)
    noise = (labels != -100) & (torch.rand(input_ids.shape) < 0.5)  # global RNG: differs on every call
    return torch.where(noise, input_ids, inputs), labels


def mlm_loss_ok(logits, labels):
    V = logits.shape[-1]
    return F.cross_entropy(logits.view(-1, V), labels.view(-1), ignore_index=-100)


def mlm_loss_by_hand(logits, labels):
    keep = labels != -100
    log_probs = logits[keep].log_softmax(-1)  # (m, V)
    return -log_probs.gather(1, labels[keep][:, None]).mean()


def mlm_loss_all_positions(logits, labels):
    keep = labels != -100
    nll = -logits.log_softmax(-1).gather(2, labels.clamp(min=0)[..., None])[..., 0]  # (B, T)
    return (nll * keep).sum() / labels.numel()


def nsp(documents, seed, *, flip=False, same_doc=False, p_random=0.5, global_rng=False, every_other=False,
        in_place=False):
    rng = random if global_rng else random.Random(seed)
    pairs = []
    for i, doc in enumerate(documents):
        others = [s for j, d in enumerate(documents) if (j == i) == same_doc for s in d]
        step = 2 if every_other else 1
        for j in range(0, len(doc) - 1, step):
            a, b = doc[j], doc[j + 1]
            if rng.random() < p_random:
                pairs.append((a, rng.choice(others), 0 if flip else 1))
            else:
                pairs.append((a, b, 1 if flip else 0))
    if in_place:
        documents.pop()
    return pairs


def nsp_balanced(documents, seed):  # exactly half, like mlstep.nsp_pairs; also correct
    return [tuple(p) for p in nsp_pairs(documents, seed=seed)]


def sop(documents, seed, *, p_swap=0.5, flip=False, keep_label=False, relabel_only=False, global_rng=False,
        every_other=False, in_place=False):
    """Sentence-order pairs as a learner writes them; the keywords reproduce typical mistakes."""
    rng = random if global_rng else random.Random(seed)
    pairs = []
    for doc in documents:
        for j in range(0, len(doc) - 1, 2 if every_other else 1):
            a, b = doc[j], doc[j + 1]
            swap = rng.random() < p_swap
            label = 0 if keep_label else int(swap) ^ int(flip)
            pairs.append((a, b, label) if relabel_only or not swap else (b, a, label))
    if in_place:
        documents[0].reverse()
    return pairs


# --- chapter 06: freezing the encoder, LoRA -------------------------------------------------------------

def freeze_ok(model):
    for p in model.bert.parameters():
        p.requires_grad = False


def freeze_all_then_head(model):  # another correct style; returns the model
    model.requires_grad_(False)
    model.classifier.requires_grad_(True)
    return model


def freeze_parts(model, *, embeddings=True, layers=None, pooler=True):
    """Freeze the chosen parts of model.bert (layers: the indices to freeze; None = all)."""
    bert = model.bert
    if embeddings:
        bert.embeddings.requires_grad_(False)
    for i, layer in enumerate(bert.encoder.layers):
        if layers is None or i in layers:
            layer.requires_grad_(False)
    for name, p in bert.encoder.named_parameters():  # the pre-LN final LayerNorm, if any
        if not name.startswith("layers."):
            p.requires_grad_(False)
    if pooler:
        bert.pooler.requires_grad_(False)
    return model


def freeze_and_replace_head(model):
    freeze_ok(model)
    model.classifier = nn.Linear(model.classifier.in_features, model.classifier.out_features)


def freeze_and_zero_head(model):
    freeze_ok(model)
    with torch.no_grad():
        model.classifier.weight.zero_()


# --- chapter 06: LoRA ---------------------------------------------------------------------------------

class LoRA(nn.Module):
    """A learner's LoRA layer; the keywords reproduce typical mistakes."""

    def __init__(self, base, rank, alpha, *, freeze=True, zero_b=True, scale=True, transposed=False,
                 copy_base=False, zero_a=False, detach_a=False, merge=False, freeze_bias=True):
        super().__init__()
        if copy_base:
            new = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None)
            new.load_state_dict(base.state_dict())
            base = new
        self.base = base
        if freeze:
            base.weight.requires_grad_(False)
            if base.bias is not None and freeze_bias:
                base.bias.requires_grad_(False)
        a_shape = (base.in_features, rank) if transposed else (rank, base.in_features)
        b_shape = (rank, base.out_features) if transposed else (base.out_features, rank)
        self.A = nn.Parameter(torch.zeros(a_shape) if zero_a else torch.randn(a_shape) / math.sqrt(rank))
        self.B = nn.Parameter(torch.zeros(b_shape) if zero_b else torch.randn(b_shape))
        self.scaling = alpha / rank if scale else 1.0
        self.transposed, self.detach_a, self.merge = transposed, detach_a, merge

    def forward(self, x):
        if self.transposed:
            return self.base(x) + x @ self.A @ self.B * self.scaling
        A = self.A.detach() if self.detach_a else self.A
        if self.merge:
            with torch.no_grad():
                self.base.weight += self.B @ self.A * self.scaling
            return self.base(x)
        return self.base(x) + (x @ A.T @ self.B.T) * self.scaling


def lora(**mistakes):
    return lambda base, rank, alpha: LoRA(base, rank, alpha, **mistakes)


# --- chapter 07: soft targets, distillation -------------------------------------------------------------

def soft_by_hand(z, T):  # numerically stable, written out
    z = z / T
    e = (z - z.amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


def soft_naive(z, T):  # overflows for large logits
    e = (z / T).exp()
    return e / e.sum(-1, keepdim=True)


def soft_in_place(z, T):
    z /= T
    return z.softmax(-1)


# --- chapter 07: distillation -------------------------------------------------------------------------

def distill(s, t, y, T, a, *, t2=True, reduction="batchmean", swap=False, teacher_T=True, student_T=True,
            swap_alpha=False):
    """(1 - a)·CE + a·T²·KL(p_teacher ‖ p_student); the keywords reproduce typical mistakes."""
    log_p_s = F.log_softmax(s / (T if student_T else 1.0), dim=-1)
    log_p_t = F.log_softmax(t / (T if teacher_T else 1.0), dim=-1)
    if swap:
        kl = F.kl_div(log_p_t, log_p_s, reduction=reduction, log_target=True)
    else:
        kl = F.kl_div(log_p_s, log_p_t, reduction=reduction, log_target=True)
    soft = kl * (T * T if t2 else 1.0)
    hard = F.cross_entropy(s, y)
    w = 1 - a if swap_alpha else a
    return (1 - w) * hard + w * soft


def distill_by_hand(s, t, y, T, a):
    p_t = (t / T).softmax(-1)
    kl = (p_t * (p_t.log() - (s / T).log_softmax(-1))).sum(-1).mean()
    return a * T**2 * kl + (1 - a) * F.cross_entropy(s, y)


REFERENCES = [
    (check_attention_weights, weights_ok),
    (check_attention_weights, weights_ok_finite_fill),
    (check_attention, attention_ok),
    (check_attention, attention_tuple),
    (check_causal_mask, causal_ok),
    (check_causal_mask, lambda n: torch.tril(torch.ones(n, n)).bool()),
    (check_split_heads, split_ok),
    (check_split_heads, lambda x, h: rearrange(x, "b n (h d) -> b h n d", h=h)),
    (check_merge_heads, merge_ok),
    (check_merge_heads, lambda x: rearrange(x, "b h n d -> b n (h d)")),
    (check_wordpiece, wordpiece),
    (check_wordpiece, wordpiece_recursive),
    (check_bert_parameter_count, bert_count),
    (check_bert_parameter_count, lambda config: float(count_parameters(BertModel(config)))),  # 1234.0 is fine
    (check_mask_tokens, mask_tokens_hf),
    (check_mask_tokens, mask_tokens_uniform),
    (check_mask_tokens, lambda ids, v, m, s, g: mask_tokens(ids, vocab_size=v, mask_id=m, special_ids=s, generator=g)),
    (check_mlm_loss, mlm_loss_ok),
    (check_mlm_loss, mlm_loss_by_hand),
    (check_mlm_loss, lambda logits, labels: F.cross_entropy(logits.transpose(1, 2), labels)),
    (check_nsp_pairs, nsp),
    (check_nsp_pairs, nsp_balanced),
    (check_sop_pairs, sop),
    (check_sop_pairs, lambda docs, seed: sop_pairs(docs, seed=seed)),  # exactly balanced
    (check_freeze_encoder, freeze_ok),
    (check_freeze_encoder, freeze_all_then_head),
    (check_freeze_encoder, freeze_parts),
    (check_freeze_encoder, freeze_encoder),
    (check_soft_targets, lambda z, T: torch.softmax(z / T, dim=-1)),
    (check_soft_targets, lambda z, T: F.softmax(z / T, dim=1)),
    (check_soft_targets, soft_by_hand),
    (check_soft_targets, lambda z, T: (p := z.softmax(-1) ** (1 / T)) / p.sum(-1, keepdim=True)),
    (check_lora_linear, lora()),
    *([(check_lora_linear, lambda base, rank, alpha: LoRALinear(base, rank, alpha))] if LoRALinear else []),
    (check_distillation_loss, distill),
    (check_distillation_loss, distill_by_hand),
    (check_distillation_loss, lambda s, t, y, T, a: distillation_loss(s, t, y, T, a)),
]


@pytest.mark.parametrize("check, fn", REFERENCES)
def test_reference_answers_pass(check, fn, capsys):
    result, line = run(check, fn, capsys)
    assert result is True
    assert line.startswith(f"✅ {check.__name__}: passed (") and "cases)" in line


WRONG = [
    # (check, learner function, words the message must contain)
    (check_attention_weights, weights_unscaled, ["unscaled", "√d_k"]),
    (check_attention_weights, weights_by_dk, ["d_k instead of √d_k"]),
    (check_attention_weights, weights_wrong_axis, ["wrong axis", "dim=-1"]),
    (check_attention_weights, weights_mask_ignored, ["mask ignored"]),
    (check_attention_weights, weights_mask_after_softmax, ["mask applied after the softmax"]),
    (check_attention_weights, weights_mask_inverted, ["mask polarity inverted"]),
    (check_attention_weights, weights_mask_inverted_finite, ["mask polarity inverted"]),
    (check_attention_weights, weights_dot_T, ["your function raised", "k.transpose(-2, -1)"]),
    (check_attention_weights, weights_in_place, ["in place", "`q`"]),
    (check_attention_weights, weights_float32, ["dtype", "float64", "float32"]),
    (check_attention_weights, lambda q, k, mask=None: weights_ok(q, k, mask).numpy(), ["not a tensor", "ndarray"]),
    (check_attention_weights, lambda q, k, mask=None: weights_ok(q, k, mask) * 1.01, ["rows don't sum to 1"]),
    (check_attention_weights, lambda q, k, mask=None: weights_ok(q, k, mask) + 1e-3 * torch.rand_like(q[..., :1]),
     ["rows don't sum to 1"]),
    (check_attention, lambda q, k, v, mask=None: weights_unscaled(q, k, mask) @ v, ["unscaled", "√d_k"]),
    (check_attention, lambda q, k, v, mask=None: weights_by_dk(q, k, mask) @ v, ["√d_k"]),
    (check_attention, lambda q, k, v, mask=None: weights_wrong_axis(q, k, mask) @ v, ["wrong axis"]),
    (check_attention, lambda q, k, v, mask=None: weights_mask_ignored(q, k, mask) @ v, ["mask ignored"]),
    (check_attention, lambda q, k, v, mask=None: weights_mask_after_softmax(q, k, mask) @ v, ["after the softmax"]),
    (check_attention, lambda q, k, v, mask=None: weights_mask_inverted(q, k, mask) @ v, ["mask polarity"]),
    (check_attention, lambda q, k, v, mask=None: weights_ok(q, k, mask), ["shape", "attention weights"]),
    (check_attention, lambda q, k, v, mask=None: attention_tuple(q, k, v, mask)[::-1], ["shape", "attention weights"]),
    (check_attention, lambda q, k, v, mask=None: weights_ok(q, k, mask) @ k, ["shape", "instead of v"]),
    (check_attention, lambda q, k, v, mask=None: (), ["empty tuple"]),
    (check_causal_mask, lambda n: torch.ones(n, n, dtype=torch.bool).triu(), ["upper triangle"]),
    (check_causal_mask, lambda n: torch.ones(n, n, dtype=torch.bool).tril(diagonal=-1), ["diagonal is False"]),
    (check_causal_mask, lambda n: torch.ones(n, n, dtype=torch.bool).triu(diagonal=1), ["polarity inverted"]),
    (check_causal_mask, lambda n: torch.ones(n, n).tril(), ["dtype", "torch.bool", "torch.float32"]),
    (check_causal_mask, lambda n: torch.ones(n, n, dtype=torch.long).tril(), ["dtype", "torch.bool"]),
    (check_causal_mask, lambda n: torch.ones(n, n + 1, dtype=torch.bool).tril(), ["shape", "(4, 4)", "(4, 5)"]),
    (check_causal_mask, lambda n: causal_ok(n).tolist(), ["not a tensor", "list"]),
    (check_split_heads, lambda x, h: x.view(x.shape[0], h, x.shape[1], -1), ["view(b, h, n, d)", "transpose"]),
    (check_split_heads, lambda x, h: rearrange(x, "b n (d h) -> b h n d", h=h), ["interleaved", "(d h)"]),
    (check_split_heads, lambda x, h: x.view(*x.shape[:2], h, -1), ["shape", "transpose(1, 2)"]),
    (check_merge_heads, lambda x: x.reshape(x.shape[0], x.shape[2], -1), ["wrong order", "transpose(1, 2)"]),
    (check_merge_heads, lambda x: rearrange(x, "b h n d -> b n (d h)"), ["wrong order", "(h d)"]),
    (check_merge_heads, lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1), [".reshape"]),
    (check_merge_heads, lambda x: x.transpose(1, 2), ["shape", "(b, n, h*d)"]),
    # chapter 03
    (check_wordpiece, functools.partial(wordpiece, shortest=True), ["shortest match instead of the longest"]),
    (check_wordpiece, functools.partial(wordpiece, keep_hash=False), ["missing '##' prefix"]),
    (check_wordpiece, functools.partial(wordpiece, hash_rest=False), ["missing '##' prefix", "looked up"]),
    (check_wordpiece, functools.partial(wordpiece, hash_first=True), ["'##' on the first piece"]),
    (check_wordpiece, lambda w, v: ["##" + p.removeprefix("##") for p in wordpiece(w, v)],
     ["'##' on the first piece"]),
    (check_wordpiece, functools.partial(wordpiece, on_miss="stop"), ["partial pieces + [UNK]", "WHOLE word"]),
    (check_wordpiece, functools.partial(wordpiece, on_miss="skip"), ["partial pieces + [UNK]", "WHOLE word"]),
    (check_wordpiece, lambda w, v: " ".join(wordpiece(w, v)), ["list of pieces", "str"]),
    (check_wordpiece, lambda w, v: v.discard(w) or wordpiece(w, v), ["changed the vocabulary"]),
    (check_wordpiece, lambda w, v: [w], ["expected ['un', '##aff', '##able'], got ['unaffable']"]),
    (check_bert_parameter_count, functools.partial(bert_count, layer_norms=False), ["forgot the LayerNorm"]),
    (check_bert_parameter_count, functools.partial(bert_count, biases=False), ["forgot the biases"]),
    (check_bert_parameter_count, functools.partial(bert_count, positions=False), ["forgot the position emb"]),
    (check_bert_parameter_count, functools.partial(bert_count, segments=False), ["forgot the segment"]),
    (check_bert_parameter_count, functools.partial(bert_count, positions=False, segments=False),
     ["forgot the position embeddings", "and the segment"]),
    (check_bert_parameter_count, functools.partial(bert_count, pooler=False), ["forgot the pooler"]),
    (check_bert_parameter_count, functools.partial(bert_count, final_norm=False), ["final LayerNorm", "pre_norm"]),
    (check_bert_parameter_count, functools.partial(bert_count, per_layer=False), ["num_layers"]),
    (check_bert_parameter_count, functools.partial(bert_count, pooler=False, layer_norms=False),
     ["forgot the LayerNorm", "pooler"]),
    (check_bert_parameter_count, lambda c: bert_count(c) + c.vocab_size * c.hidden_size, ["expected", "(+"]),
    (check_bert_parameter_count, lambda c: bert_count(c) / 3, ["whole number"]),
    (check_bert_parameter_count, lambda c: str(bert_count(c)), ["expected an int", "str"]),
    # chapters 04-05
    (check_mask_tokens, functools.partial(mask_tokens_hf, mask_specials=True), ["masking specials"]),
    (check_mask_tokens, functools.partial(mask_tokens_hf, label_all=True), ["labels set for every token"]),
    (check_mask_tokens, lambda *a: (mask_tokens_hf(*a)[0], torch.where(torch.isin(a[0], torch.tensor(a[3])), -100, a[0])),
     ["labels set for every token"]),
    (check_mask_tokens, functools.partial(mask_tokens_hf, unchosen_label=0), ["are 0, not -100"]),
    (check_mask_tokens, functools.partial(mask_tokens_hf, labels_from_inputs=True), ["ORIGINAL id"]),
    (check_mask_tokens, functools.partial(mask_tokens_hf, randomise_unchosen=True), ["changed", "label is -100"]),
    (check_mask_tokens, mask_tokens_15_percent_masked, ["15 % [MASK] tokens instead of 15 % chosen"]),
    (check_mask_tokens, functools.partial(mask_tokens_hf, p=0.2), ["wrong rate", "20.", "expected 15 %"]),
    (check_mask_tokens, functools.partial(mask_tokens_hf, p_mask=1.0), ["every chosen token became [MASK]"]),
    (check_mask_tokens, functools.partial(mask_tokens_hf, p_random=0.0), ["no random replacements"]),
    (check_mask_tokens, functools.partial(mask_tokens_hf, p_random=1.0), ["no unchanged 10 %"]),
    (check_mask_tokens, functools.partial(mask_tokens_hf, p_mask=0.6), ["wrong 80/10/10 split"]),
    (check_mask_tokens, functools.partial(mask_tokens_hf, global_rng=True), ["did not draw from `generator`"]),
    (check_mask_tokens, mask_tokens_partly_global, ["not reproducible"]),
    (check_mask_tokens, functools.partial(mask_tokens_hf, in_place=True), ["in place"]),
    (check_mask_tokens, lambda *a: mask_tokens_hf(*a)[1], ["tuple (inputs, labels)", "Tensor"]),
    (check_mask_tokens, lambda *a: tuple(x.float() for x in mask_tokens_hf(*a)), ["torch.long"]),
    (check_mlm_loss, mlm_loss_all_positions, ["averaged over all B·T positions"]),
    (check_mlm_loss, lambda lo, la: F.cross_entropy(lo.flatten(0, 1), la.flatten().clamp(min=0)), ["treated -100 as class 0"]),
    (check_mlm_loss, lambda lo, la: F.cross_entropy(lo.flatten(0, 1), la.flatten(), reduction="sum"), ["summed instead of mean"]),
    (check_mlm_loss, lambda lo, la: F.cross_entropy(lo.softmax(-1).flatten(0, 1), la.flatten()), ["softmax applied twice"]),
    (check_mlm_loss, lambda lo, la: F.nll_loss(lo.flatten(0, 1), la.flatten()), ["log-probabilities"]),
    (check_mlm_loss, lambda lo, la: F.cross_entropy(lo, la), ["your function raised", "flatten"]),
    (check_mlm_loss, lambda lo, la: F.cross_entropy(lo.flatten(0, 1), la.flatten(), reduction="none"),
     ["shape", "reduction='none'"]),
    (check_mlm_loss, lambda lo, la: torch.tensor(mlm_loss_ok(lo, la).item()), ["no gradient"]),
    (check_mlm_loss, lambda lo, la: mlm_loss_ok(lo, la).float(), ["dtype", "float64"]),
    (check_nsp_pairs, functools.partial(nsp, flip=True), ["label convention flipped"]),
    (check_nsp_pairs, functools.partial(nsp, same_doc=True), ["random sentence drawn from the same document"]),
    (check_nsp_pairs, functools.partial(nsp, p_random=1.0), ["always random"]),
    (check_nsp_pairs, functools.partial(nsp, p_random=0.0), ["never random"]),
    (check_nsp_pairs, functools.partial(nsp, p_random=0.8), ["8", "% of your pairs are random", "about 50 %"]),
    (check_nsp_pairs, functools.partial(nsp, global_rng=True), ["not reproducible", "random.Random(seed)"]),
    (check_nsp_pairs, lambda docs, seed: nsp(docs, 0), ["seed is ignored"]),
    (check_nsp_pairs, functools.partial(nsp, every_other=True), ["expected", "pairs", "consecutive"]),
    (check_nsp_pairs, functools.partial(nsp, in_place=True), ["changed `documents` in place"]),
    (check_nsp_pairs, lambda docs, seed: [(a, b) for a, b, _ in nsp(docs, seed)], ["length 3"]),
    (check_nsp_pairs, lambda docs, seed: [(a, b, "next") for a, b, _ in nsp(docs, seed)], ["label", "0", "1"]),
    (check_nsp_pairs, lambda docs, seed: [(a, docs[0][0] if y else b, y) for a, b, y in nsp(docs, seed)],
     ["same document"]),  # document 0's own pairs come first
    (check_sop_pairs, functools.partial(sop, flip=True), ["labels flipped", "label 0 means in order"]),
    (check_sop_pairs, functools.partial(sop, keep_label=True), ["swapping without changing the label"]),
    (check_sop_pairs, functools.partial(sop, relabel_only=True), ["label 1 without swapping"]),
    (check_sop_pairs, nsp, ["pairs drawn across documents", "NSP, not SOP"]),
    (check_sop_pairs, functools.partial(sop, p_swap=1.0), ["always swapped"]),
    (check_sop_pairs, functools.partial(sop, p_swap=0.0), ["never swapped"]),
    (check_sop_pairs, functools.partial(sop, p_swap=0.8), ["% of your pairs are swapped", "about 50 %"]),
    (check_sop_pairs, functools.partial(sop, global_rng=True), ["not reproducible", "random.Random(seed)"]),
    (check_sop_pairs, lambda docs, seed: sop(docs, 0), ["seed is ignored"]),
    (check_sop_pairs, functools.partial(sop, every_other=True), ["expected 421 pairs", "consecutive"]),
    (check_sop_pairs, functools.partial(sop, in_place=True), ["changed `documents` in place"]),
    (check_sop_pairs, lambda docs, seed: sop(docs, seed) + sop(docs, seed)[:1], ["expected 421 pairs"]),
    (check_sop_pairs, lambda docs, seed: [(d[j], d[min(j + 2, len(d) - 1)], 0) for d in docs for j in range(len(d) - 1)],
     ["not two consecutive sentences"]),  # (s_j, s_j+2): skips a sentence
    (check_sop_pairs, lambda docs, seed: [(a, b, "swapped") for a, b, _ in sop(docs, seed)],
     ["label", "0 (in order) or 1 (swapped)"]),
    # chapter 06
    (check_freeze_encoder, lambda model: None, ["nothing frozen", "model.bert.parameters()"]),
    (check_freeze_encoder, lambda model: model.bert.eval(), ["nothing frozen", ".eval()"]),
    (check_freeze_encoder, lambda model: model.requires_grad_(False), ["head frozen too", "everything"]),
    (check_freeze_encoder, lambda model: freeze_ok(model) or model.classifier.bias.requires_grad_(False),
     ["head frozen too", "classifier.bias"]),
    (check_freeze_encoder, functools.partial(freeze_parts, pooler=False),
     ["pooler left trainable", "part of the encoder", "linear probe"]),
    (check_freeze_encoder, functools.partial(freeze_parts, embeddings=False), ["embeddings left trainable"]),
    (check_freeze_encoder, functools.partial(freeze_parts, layers=[0]), ["only some layers frozen", "layer 1"]),
    (check_freeze_encoder, lambda model: model.bert.encoder.requires_grad_(False),
     ["encoder left partly trainable", "embeddings, pooler"]),
    (check_freeze_encoder, freeze_and_replace_head, ["replaced parameters", "classifier"]),
    (check_freeze_encoder, freeze_and_zero_head, ["changed values", "classifier.weight"]),
    (check_freeze_encoder, lambda model: freeze_encoder(copy.deepcopy(model)), ["returned a different model"]),
    (check_freeze_encoder, lambda model: freeze_ok(model) or 1, ["model (or None)", "int"]),
    (check_freeze_encoder, lambda model: model.bert.requires_grad_(False), ["returned a part of the model"]),
    (check_lora_linear, lora(freeze=False), ["base not frozen", "base.weight"]),
    (check_lora_linear, lora(freeze_bias=False), ["base not frozen", "base.bias"]),
    (check_lora_linear, lora(zero_b=False), ["B not zero-initialised"]),
    (check_lora_linear, lora(zero_a=True), ["A is zero-initialised"]),
    (check_lora_linear, lora(scale=False), ["scaling missing (alpha/rank)"]),
    (check_lora_linear, lambda base, rank, alpha: LoRA(base, rank, alpha // rank * rank), ["integer division"]),
    (check_lora_linear, lora(transposed=True), ["wrong shapes", "(rank, in_features)"]),
    (check_lora_linear, lora(copy_base=True), ["wrap the `base`"]),
    (check_lora_linear, lora(detach_a=True), ["no gradient reaches A"]),
    (check_lora_linear, lora(merge=True), ["weights changed"]),
    (check_lora_linear, lambda base, rank, alpha: base, ["base not frozen"]),
    (check_lora_linear, lambda base, rank, alpha: nn.Sequential(base.requires_grad_(False)),
     ["expected exactly 2 trainable tensors", "none"]),
    (check_lora_linear, lambda base, rank, alpha: base.weight, ["expected an nn.Module", "Parameter"]),
    # chapter 07
    (check_soft_targets, lambda z, T: torch.softmax(z, -1), ["temperature ignored"]),
    (check_soft_targets, lambda z, T: torch.softmax(z * T, -1), ["multiplied by T instead of divided"]),
    (check_soft_targets, lambda z, T: torch.softmax(z / T, 0), ["wrong dim", "dim=-1"]),
    (check_soft_targets, lambda z, T: torch.log_softmax(z / T, -1), ["log-softmax returned"]),
    (check_soft_targets, lambda z, T: torch.softmax(z, -1) ** (1 / T), ["after the softmax", "renormalising"]),
    (check_soft_targets, lambda z, T: torch.softmax(z, -1) / T, ["divided by T", "LOGITS"]),
    (check_soft_targets, soft_naive, ["overflow", "subtract the max", "torch.softmax"]),
    (check_soft_targets, soft_in_place, ["in place", "`logits`"]),
    (check_soft_targets, lambda z, T: torch.softmax(z.float() / T, -1), ["dtype", "float64"]),
    (check_soft_targets, lambda z, T: torch.softmax(z / T, -1).sum(0), ["shape", "one value per class"]),
    (check_soft_targets, lambda z, T: torch.softmax(z / T, -1) * 1.01, ["rows don't sum to 1"]),
    (check_soft_targets, lambda z, T: torch.softmax(z / T, -1).tolist(), ["not a tensor", "list"]),
    (check_distillation_loss, functools.partial(distill, t2=False), ["missing T²"]),
    (check_distillation_loss, functools.partial(distill, reduction="mean"), ["reduction 'mean'", "off by C"]),
    (check_distillation_loss, functools.partial(distill, reduction="sum"), ["reduction 'sum'"]),
    (check_distillation_loss, functools.partial(distill, swap=True), ["KL direction swapped"]),
    (check_distillation_loss, functools.partial(distill, teacher_T=False), ["not applied to the teacher"]),
    (check_distillation_loss, functools.partial(distill, student_T=False), ["not applied to the student"]),
    (check_distillation_loss, functools.partial(distill, teacher_T=False, student_T=False), ["applied to neither"]),
    (check_distillation_loss, functools.partial(distill, swap_alpha=True), ["alpha weights swapped"]),
    (check_distillation_loss,
     lambda s, t, y, T, a: (1 - a) * F.cross_entropy(s, y)
     + a * T * T * F.kl_div((s / T).softmax(-1), (t / T).softmax(-1), reduction="batchmean"),
     ["F.kl_div got probabilities", "log_softmax"]),
    (check_distillation_loss,
     lambda s, t, y, T, a: (1 - a) * F.cross_entropy(s, y)
     + a * T * T * F.kl_div((s / T).log_softmax(-1), (t / T).log_softmax(-1), reduction="batchmean"),
     ["log_target=True"]),
    (check_distillation_loss,
     lambda s, t, y, T, a: (1 - a) * F.cross_entropy(s, y)
     + a * T * T * F.cross_entropy(s / T, (t / T).softmax(-1)),
     ["soft cross-entropy instead of KL"]),
    (check_distillation_loss, lambda s, t, y, T, a: distill(s, t, y, T, a).item(), ["not a tensor", "float"]),
    (check_distillation_loss, lambda s, t, y, T, a: distill(s.detach(), t, y, T, a), ["no gradient"]),
]


@pytest.mark.filterwarnings("ignore:The use of `x.T`:UserWarning")
@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
@pytest.mark.parametrize("check, fn, words", WRONG, ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(WRONG)])
def test_typical_mistakes_fail_with_a_specific_message(check, fn, words, capsys):
    result, line = run(check, fn, capsys)
    assert result is False
    assert line.startswith(f"❌ {check.__name__}: ")
    for word in words:
        assert word in line, (word, line)


@pytest.mark.parametrize("check", list(CHECKS.values()), ids=list(CHECKS))
def test_not_implemented_is_reported_not_raised(check, capsys):
    result, line = run(check, not_implemented, capsys)
    assert result is False
    assert "your function raised NotImplementedError: Exercise: write this part" in line


@pytest.mark.parametrize("check", list(CHECKS.values()), ids=list(CHECKS))
@pytest.mark.parametrize("bad", [None, 3, "abc"], ids=["None", "int", "str"])
def test_never_raises_on_garbage(check, bad, capsys):
    assert run(check, bad, capsys)[0] is False  # not a function
    assert run(check, lambda *a: bad, capsys)[0] is False  # returns garbage
    result, line = run(check, lambda *a: 1 / 0, capsys)
    assert result is False and "ZeroDivisionError" in line


def test_registry_lists_every_check():
    assert set(CHECKS) >= {"check_attention_weights", "check_attention", "check_causal_mask",
                           "check_split_heads", "check_merge_heads", "check_wordpiece",
                           "check_bert_parameter_count", "check_mask_tokens", "check_mlm_loss",
                           "check_nsp_pairs", "check_lora_linear", "check_distillation_loss",
                           "check_sop_pairs", "check_freeze_encoder", "check_soft_targets"}
    for name, check in CHECKS.items():
        assert check.__name__ == name and name.startswith("check_")


def test_checks_leave_the_global_rng_alone(capsys):
    torch.manual_seed(0)
    random.seed(0)
    state, py_state = torch.random.get_rng_state(), random.getstate()
    for check, fn in REFERENCES:
        check(fn)
    # also when the learner's function draws from the global RNGs (wrongly, or to build a model)
    check_mask_tokens(functools.partial(mask_tokens_hf, global_rng=True))
    check_nsp_pairs(functools.partial(nsp, global_rng=True))
    check_sop_pairs(functools.partial(sop, global_rng=True))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert random.getstate() == py_state


@pytest.mark.parametrize("offset", range(1, 6))
def test_mask_tokens_check_accepts_any_correct_draw(offset, capsys):
    """The rate tolerances leave room for every sample, not only the one the reference draws."""
    def shifted(input_ids, vocab_size, mask_id, special_ids, generator):
        generator.manual_seed(generator.initial_seed() * 1000 + offset)  # another stream, still from `generator`
        return mask_tokens_hf(input_ids, vocab_size, mask_id, special_ids, generator)

    assert run(check_mask_tokens, shifted, capsys)[0] is True


def test_nsp_check_accepts_any_correct_draw(capsys):
    for offset in range(1, 21):
        result, line = run(check_nsp_pairs, lambda docs, seed, k=offset: nsp(docs, seed * 100 + k), capsys)
        assert result is True, (offset, line)


def test_sop_check_accepts_any_correct_draw(capsys):
    for offset in range(1, 21):
        result, line = run(check_sop_pairs, lambda docs, seed, k=offset: sop(docs, seed * 100 + k), capsys)
        assert result is True, (offset, line)


@pytest.mark.skipif(LoRALinear is None, reason="mlstep.lora is not there")
def test_lora_reference_is_the_formula():
    from mlstep.exercises.finetuning import _reference

    g = torch.Generator().manual_seed(0)
    W, b, A, B, x = (torch.randn(*s, generator=g) for s in ((7, 5), (7,), (3, 5), (7, 3), (2, 4, 5)))
    torch.testing.assert_close(_reference(W, b, A, B, 3, 6.0, x), x @ W.T + b + 2.0 * (x @ A.T @ B.T))


def test_checks_are_deterministic(capsys):
    lines = []
    for _ in range(2):
        check_attention_weights(lambda q, k, mask=None: weights_ok(q, k, mask) * 1.5)
        lines.append(capsys.readouterr().out)
    assert lines[0] == lines[1]


def test_grade_report_gets_one_json_line_per_check(tmp_path, monkeypatch, capsys):
    report = tmp_path / "report.jsonl"
    monkeypatch.setenv(REPORT_ENV, str(report))
    assert check_causal_mask(causal_ok) is True
    assert check_split_heads(not_implemented) is False
    records = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert records == [
        {"check": "check_causal_mask", "passed": True, "message": "passed (3 cases)"},
        {"check": "check_split_heads", "passed": False, "message": records[1]["message"]},
    ]
    assert "NotImplementedError" in records[1]["message"]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "✅ check_causal_mask: passed (3 cases)"
    assert out[1] == f"❌ check_split_heads: {records[1]['message']}"


def test_no_report_file_without_the_env_var(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(REPORT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    check_causal_mask(causal_ok)
    assert list(tmp_path.iterdir()) == []


def test_head_layout_is_the_one_multi_head_attention_uses():
    """split -> SDPA -> merge -> out_proj with the checks' patterns reproduces MultiHeadAttention."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(TransformerConfig(hidden_size=12, num_heads=3)).eval()
    x = torch.randn(2, 5, 12)
    heads = [rearrange(proj(x), SPLIT_HEADS, h=3) for proj in (mha.q_proj, mha.k_proj, mha.v_proj)]
    out, _ = scaled_dot_product_attention(*heads)  # (b, h, n, d)
    manual = mha.out_proj(rearrange(out, MERGE_HEADS))  # (b, n, h*d)
    torch.testing.assert_close(manual, mha(x))
    # and the nn.MultiheadAttention layout, through from_torch
    ref = torch.nn.MultiheadAttention(12, 3, batch_first=True).eval()
    torch.testing.assert_close(MultiHeadAttention.from_torch(ref)(x), ref(x, x, x, need_weights=False)[0])
