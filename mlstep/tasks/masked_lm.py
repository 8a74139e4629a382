"""Pretraining pipeline: documents → sentence pairs → masked batches → MLM (+ NSP or SOP) loss.

The pieces every pretraining chapter uses, in the order data flows:

1. :func:`make_pairs` turns documents (lists of sentences) into ``(a, b, label)`` pairs for the
   chosen objective: consecutive pairs for plain MLM, :func:`mlstep.nsp_pairs` for next-sentence
   prediction, :func:`mlstep.sop_pairs` for sentence-order prediction.
2. :class:`PairDataset` encodes every pair once with the tokenizer (``[CLS] a [SEP] b [SEP]``).
3. :class:`MaskingCollator` pads a batch and masks it *afresh each time* (dynamic masking, as
   RoBERTa does): the same sentence gets different masks in different epochs.
4. :func:`pretraining_step` is the ``step_fn`` for :func:`mlstep.train`;
   :func:`evaluate_pretraining` measures masked-token accuracy, perplexity and NSP/SOP accuracy on
   batches masked once with a fixed seed, so every evaluation sees the same masks.

:class:`PretrainRecipe` and :func:`pretrain_on_corpus` pretrain the course's tiny BERT;
:mod:`mlstep.tasks.course` saves it and loads it back (``python -m mlstep.tasks bert``).
"""

from __future__ import annotations

import copy
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mlstep.bert import BertConfig, BertForPreTraining
from mlstep.data import load_task
from mlstep.masking import mask_tokens, nsp_pairs, sop_pairs
from mlstep.tokenizers.wordpiece import WordPieceTokenizer
from mlstep.tools.runtime import IGNORE_INDEX, eval_mode, get_device, setup_distributed
from mlstep.train import TrainConfig, train

__all__ = ["OBJECTIVES", "make_pairs", "PairDataset", "MaskingCollator", "pretraining_step", "fixed_batches",
           "evaluate_pretraining", "unigram_baseline", "fill_mask", "PretrainRecipe", "corpus_tokenizer",
           "pretrain_on_corpus"]

OBJECTIVES = ("mlm", "mlm+nsp", "mlm+sop")


def make_pairs(documents: Sequence[Sequence[str]], objective: str = "mlm+nsp", seed: int = 0
               ) -> list[tuple[str, str, int]]:
    """Sentence pairs ``(a, b, label)`` for ``objective``.

    - ``"mlm"``: every pair of consecutive sentences, label 0 (the label is not used);
    - ``"mlm+nsp"``: label 0 = b follows a, 1 = b is a random sentence of another document;
    - ``"mlm+sop"``: label 0 = a, b in order, 1 = swapped (b, a).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if objective == "mlm+nsp":
        return nsp_pairs(documents, seed=seed)
    if objective == "mlm+sop":
        return sop_pairs(documents, seed=seed)
    pairs = [(a, b, 0) for doc in documents for a, b in zip(doc, doc[1:])]
    if not pairs:
        raise ValueError("no document has two sentences: nothing to pair")
    return pairs


class PairDataset(Dataset):
    """Sentence pairs encoded once as ``[CLS] a [SEP] b [SEP]``, truncated to ``max_length``.

    Each item is a dict of lists: ``input_ids``, ``token_type_ids``, ``word_ids`` (a word index
    that is unique across both segments, −1 for special tokens: what whole-word masking needs),
    and ``label`` (the NSP/SOP label).
    """

    def __init__(self, pairs: Sequence[tuple[str, str, int]], tokenizer: WordPieceTokenizer,
                 max_length: int = 64):
        if not pairs:
            raise ValueError("PairDataset needs at least one pair")
        self.max_length = max_length
        self.items = []
        for a, b, label in pairs:
            enc = tokenizer.encode(a, pair=b, max_length=max_length)
            # word ids restart in the second segment: offset them so that every word is unique
            offset = 1 + max((w for w, s in zip(enc.word_ids, enc.sequence_ids) if s == 0 and w is not None),
                             default=-1)
            word_ids = [-1 if w is None else w + (offset if s == 1 else 0)
                        for w, s in zip(enc.word_ids, enc.sequence_ids)]
            self.items.append({"input_ids": enc.ids, "token_type_ids": enc.token_type_ids,
                               "word_ids": word_ids, "label": int(label)})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class MaskingCollator:
    """Pads a list of :class:`PairDataset` items to the longest and masks them for MLM.

    Args:
        tokenizer: gives the pad, mask and special ids and the vocabulary size.
        mlm_probability: fraction of tokens chosen for prediction (BERT: 0.15).
        whole_word: mask every piece of a chosen word together.
        sentence_labels: include ``nsp_labels`` (the pair labels) in the batch; False for plain MLM.
        generator: a CPU ``torch.Generator`` for the masks. None (the default for training) uses
            PyTorch's global generator, which :func:`mlstep.train.train` seeds and restores on
            resume, so a resumed run sees the same masks.
    """

    def __init__(self, tokenizer: WordPieceTokenizer, mlm_probability: float = 0.15,
                 whole_word: bool = False, sentence_labels: bool = True,
                 generator: torch.Generator | None = None):
        self.pad_id, self.mask_id = tokenizer.pad_id, tokenizer.mask_id
        self.special_ids = list(tokenizer.special_ids)
        self.vocab_size = tokenizer.vocab_size
        self.mlm_probability, self.whole_word = mlm_probability, whole_word
        self.sentence_labels, self.generator = sentence_labels, generator

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        if not items:
            raise ValueError("cannot collate an empty batch")
        T = max(len(it["input_ids"]) for it in items)

        def pad(key: str, value: int) -> torch.Tensor:
            return torch.tensor([it[key] + [value] * (T - len(it[key])) for it in items], dtype=torch.long)

        input_ids = pad("input_ids", self.pad_id)  # (B, T)
        attention_mask = (torch.arange(T) < torch.tensor([len(it["input_ids"]) for it in items])[:, None]).long()
        inputs, labels = mask_tokens(
            input_ids, vocab_size=self.vocab_size, mask_id=self.mask_id, special_ids=self.special_ids,
            mlm_probability=self.mlm_probability, generator=self.generator,
            word_ids=pad("word_ids", -1) if self.whole_word else None, attention_mask=attention_mask,
        )
        batch = {"input_ids": inputs, "token_type_ids": pad("token_type_ids", 0),
                 "attention_mask": attention_mask, "mlm_labels": labels}
        if self.sentence_labels:
            batch["nsp_labels"] = torch.tensor([it["label"] for it in items], dtype=torch.long)
        return batch


def pretraining_step(model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """``step_fn`` for :func:`mlstep.train.train`: the joint loss, with its parts for the history."""
    out = model(**batch)
    labels = batch["mlm_labels"]
    parts = {"mlm_loss": F.cross_entropy(out.mlm_logits.detach(), labels[labels != IGNORE_INDEX]).item()}
    if "nsp_labels" in batch:
        parts["nsp_loss"] = F.cross_entropy(out.nsp_logits.detach(), batch["nsp_labels"]).item()
    return out.loss, parts


def fixed_batches(dataset: Dataset, collator: MaskingCollator, batch_size: int = 128, seed: int = 0,
                  limit: int | None = None) -> list[dict[str, torch.Tensor]]:
    """The first ``limit`` items of ``dataset`` in order, masked once with a seeded generator.

    For evaluation: every call (and every evaluation during training) sees the same masks.
    """
    n = len(dataset) if limit is None else min(limit, len(dataset))
    g = torch.Generator().manual_seed(seed)
    fixed = copy.copy(collator)  # same settings, its own seeded generator
    fixed.generator = g
    return [fixed([dataset[i] for i in range(s, min(s + batch_size, n))]) for s in range(0, n, batch_size)]


@torch.no_grad()
def evaluate_pretraining(model: BertForPreTraining, batches: Sequence[dict]) -> dict[str, float]:
    """Masked-token accuracy and loss (→ perplexity) and, with labels, NSP/SOP accuracy."""
    device = next(model.parameters()).device
    correct = total = 0
    nll = 0.0
    nsp_correct = nsp_total = 0
    with eval_mode(model):
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(**batch)
            targets = batch["mlm_labels"][batch["mlm_labels"] != IGNORE_INDEX]  # (m,)
            nll += F.cross_entropy(out.mlm_logits.float(), targets, reduction="sum").item()
            correct += (out.mlm_logits.argmax(-1) == targets).sum().item()
            total += targets.numel()
            if "nsp_labels" in batch:
                nsp_correct += (out.nsp_logits.argmax(-1) == batch["nsp_labels"]).sum().item()
                nsp_total += batch["nsp_labels"].numel()
    if total == 0:
        raise ValueError("the evaluation batches contain no masked token")
    result = {"mlm_accuracy": correct / total, "mlm_loss": nll / total,
              "perplexity": math.exp(min(nll / total, 50.0))}
    if nsp_total:
        result["nsp_accuracy"] = nsp_correct / nsp_total
    return result


def unigram_baseline(train: Dataset, batches: Sequence[dict], special_ids: Sequence[int]) -> dict[str, float]:
    """The best context-free guess: token frequencies counted on ``train``.

    Returns the accuracy of always predicting the most frequent token, and the perplexity of the
    unigram distribution (add-one smoothed) on the masked tokens of ``batches``.
    """
    specials = set(special_ids)
    counts = Counter(t for item in train for t in item["input_ids"] if t not in specials)
    vocab = 1 + max(max(counts), max(int(b["mlm_labels"].max()) for b in batches))
    freq = torch.ones(vocab)  # add-one smoothing: an unseen token is not infinitely surprising
    for token, c in counts.items():
        freq[token] += c
    logp = (freq / freq.sum()).log()
    targets = torch.cat([b["mlm_labels"][b["mlm_labels"] != IGNORE_INDEX] for b in batches])
    top = int(freq.argmax())
    return {"mlm_accuracy": (targets == top).float().mean().item(),
            "perplexity": math.exp(-logp[targets].mean().item()), "top_token_id": top}


@torch.no_grad()
def fill_mask(model: BertForPreTraining, tokenizer: WordPieceTokenizer, text: str, top_k: int = 5
              ) -> list[list[tuple[str, float]]]:
    """The ``top_k`` predictions (token, probability) for each ``[MASK]`` in ``text``."""
    enc = tokenizer.encode(text)
    positions = [i for i, t in enumerate(enc.ids) if t == tokenizer.mask_id]
    if not positions:
        raise ValueError(f"no [MASK] token in {text!r}")
    device = next(model.parameters()).device
    ids = torch.tensor([enc.ids], device=device)
    with eval_mode(model):
        logits = model(ids, token_type_ids=torch.tensor([enc.token_type_ids], device=device)).mlm_logits[0]  # (T, V)
    probs = logits[positions].float().softmax(-1)  # (masks, V)
    probs[:, list(tokenizer.special_ids)] = 0  # never suggest [PAD], [CLS], ...
    top = probs.topk(top_k, dim=-1)
    return [[(tokenizer.id_to_token(int(i)), float(p)) for p, i in zip(ps, ids_)]
            for ps, ids_ in zip(top.values, top.indices)]


# --- the course's pretraining recipe: chapter 05 runs it, chapters 06-07 start from its result -----

@dataclass(frozen=True)
class PretrainRecipe:
    """How the course's tiny BERT is pretrained (chapter 05 runs it; chapters 06-07 start from it)."""

    objective: str = "mlm+nsp"  # "mlm", "mlm+nsp" or "mlm+sop"
    vocab_size: int = 2000  # WordPiece vocabulary trained on the pretraining documents
    max_length: int = 64  # tokens per sentence pair, [CLS]/[SEP] included
    max_position: int | None = None  # rows of the position table; None: max_length (more: longer inputs later)
    hidden_size: int = 64  # model width D
    num_layers: int = 2  # encoder layers
    num_heads: int = 4  # attention heads (4 beat 2 at this width)
    intermediate_size: int = 256  # FFN width, 4·D
    dropout: float = 0.0  # dropout in embeddings, attention and FFN (0: the corpus is big enough)
    steps: int = 4500  # optimizer steps (polarity knowledge appears after ~1,500; NSP keeps improving)
    batch_size: int = 64  # sentence pairs per step
    lr: float = 3e-3  # peak lr of the encoder
    embedding_lr: float = 1e-2  # peak lr of the embeddings (rare tokens need bigger steps)
    warmup_ratio: float = 0.06  # linear warmup over this fraction of the steps
    decay_ratio: float = 0.2  # linear decay to 0 over this last fraction; constant in between
    eval_every: int = 500  # evaluate on held-out pairs every N steps
    whole_word: bool = False  # mask every piece of a chosen word together (Google's later BERTs)
    seed: int = 0  # seeds pairs, masks, dropout and initialisation
    max_documents: int | None = None  # train on the first N documents only (quick runs); None: all

    def model_config(self, vocab_size: int) -> BertConfig:
        """The model this recipe trains (pre-LN), for a tokenizer of ``vocab_size`` pieces."""
        return BertConfig(vocab_size=vocab_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                          num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                          max_position=self.max_position or self.max_length, pre_norm=True, dropout=self.dropout)

    def train_config(self, progress: bool = True, device: str = "cpu") -> TrainConfig:
        """The run this recipe makes: steps, the encoder's peak lr and its schedule, evaluations, seed."""
        return TrainConfig(max_steps=self.steps, lr=self.lr, warmup_ratio=self.warmup_ratio,
                           decay_ratio=self.decay_ratio, eval_every=self.eval_every, seed=self.seed,
                           progress=progress, device=device)


def corpus_tokenizer(vocab_size: int = 2000) -> WordPieceTokenizer:
    """The WordPiece tokenizer trained on the offline corpus's pretraining documents (deterministic)."""
    documents = load_task("pretrain", "train")["sentences"]
    return WordPieceTokenizer.train([s for doc in documents for s in doc], vocab_size=vocab_size)


def pretrain_on_corpus(recipe: PretrainRecipe = PretrainRecipe(), tokenizer: WordPieceTokenizer | None = None,
                       progress: bool = True, device: str = "cpu", documents: Sequence | None = None,
                       held_out: Sequence | None = None):
    """Pretrain a tiny BERT with ``recipe`` on ``documents`` (lists of sentences; default: the offline corpus).

    Returns ``(model, tokenizer, history, valid_batches)``: the model (in eval mode), its tokenizer,
    the :class:`mlstep.train.History`, and the held-out batches (fixed masks) it was evaluated on.
    ``device="auto"`` uses a GPU when there is one (bf16 autocast). Under ``torchrun`` each process
    trains on its shard of the pairs (DistributedSampler) and gradients are averaged by DDP.
    It is evaluated on ``held_out`` documents; the tokenizer is trained on ``documents`` unless given.
    """
    documents = (load_task("pretrain", "train")["sentences"] if documents is None else documents)[: recipe.max_documents]
    held_out = load_task("pretrain", "validation")["sentences"] if held_out is None else held_out
    tokenizer = tokenizer or WordPieceTokenizer.train([s for doc in documents for s in doc], recipe.vocab_size)
    train_set = PairDataset(make_pairs(documents, recipe.objective, seed=recipe.seed), tokenizer, recipe.max_length)
    valid_set = PairDataset(make_pairs(held_out, recipe.objective, seed=recipe.seed + 1), tokenizer, recipe.max_length)
    collator = MaskingCollator(tokenizer, sentence_labels=recipe.objective != "mlm", whole_word=recipe.whole_word)
    sampler = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: each process gets its own shard
        setup_distributed(device)  # the sampler needs the process group; train() reuses it
        sampler = DistributedSampler(train_set, seed=recipe.seed)
    loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=sampler is None, sampler=sampler,
                        collate_fn=collator, generator=torch.Generator().manual_seed(recipe.seed),
                        pin_memory=get_device(device).type == "cuda")  # faster copies to the GPU
    valid_batches = fixed_batches(valid_set, collator, limit=2000, seed=recipe.seed)

    torch.manual_seed(recipe.seed)
    model = BertForPreTraining(recipe.model_config(tokenizer.vocab_size))
    emb = model.bert.embeddings
    groups = [{"params": [emb.word_embeddings.weight, emb.position_embeddings.weight,
                          emb.token_type_embeddings.weight], "lr": recipe.embedding_lr}]
    history = train(model, loader, pretraining_step, recipe.train_config(progress, device), param_groups=groups,
                    eval_fn=lambda m: evaluate_pretraining(m, valid_batches))
    return model.eval(), tokenizer, history, valid_batches
