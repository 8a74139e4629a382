"""Domain adaptation: move a pretrained model to a new domain with unlabeled text of that domain.

A new domain brings new words. A tokenizer trained on the old domain cuts each into pieces that
mean something else ("soothing" → so ##ot ##hi ##n ##g), and a model sees them only as such
spellings. Two steps, each measured in chapter 09:

1. :func:`new_words` finds the words that are frequent in the new domain's text and absent from
   the old one; :func:`extend_vocabulary` adds them to the tokenizer as whole tokens and gives each
   a row in the (tied) embedding matrix, initialised as the mean of its old pieces' rows (so the
   model starts from what it read before).
2. :func:`continue_pretraining`: more masked-language-model steps on the new domain's documents
   (domain-adaptive pretraining, Gururangan et al., 2020), so that context fills in what the new
   words mean; then fine-tune as usual.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torch.utils.data import DataLoader

from mlstep.bert import BertForPreTraining
from mlstep.tasks.masked_lm import MaskingCollator, PairDataset, make_pairs, pretraining_step
from mlstep.tokenizers.wordpiece import WordPieceTokenizer
from mlstep.train import TrainConfig, train

__all__ = ["new_words", "extend_vocabulary", "continue_pretraining"]


def new_words(new_texts: Iterable[str], old_texts: Iterable[str], tokenizer: WordPieceTokenizer,
              min_count: int = 20) -> list[str]:
    """Words seen at least ``min_count`` times in ``new_texts``, never in ``old_texts``, that are
    not a token of their own (cut into pieces, or unknown): most frequent first (ties alphabetical)."""
    old = {w for text in old_texts for w in tokenizer.pretokenize(text)}
    counts = Counter(w for text in new_texts for w in tokenizer.pretokenize(text) if w not in old)
    words = [w for w, c in counts.items() if c >= min_count and tokenizer.token_to_id(w) is None]
    return sorted(words, key=lambda w: (-counts[w], w))


@torch.no_grad()
def extend_vocabulary(model: BertForPreTraining, tokenizer: WordPieceTokenizer, words: Sequence[str]
                      ) -> tuple[BertForPreTraining, WordPieceTokenizer]:
    """A copy of ``model`` and a tokenizer with ``words`` added as whole tokens (ids ``V, V+1, …``).

    Each new embedding row (the MLM decoder shares it) and output bias is the mean of the word's
    old pieces'; every old row is unchanged, so on text without the new words the model computes
    what it did. (A new word can also become the first piece of a longer word: "care" in "careful".)
    """
    words = list(dict.fromkeys(w for w in words if tokenizer.token_to_id(w) is None))
    bad = [w for w in words if not w or w != w.strip() or " " in w or w.startswith("##")]
    if bad:
        raise ValueError(f"new words must be single words without spaces or '##', got {bad[:5]}")
    old_vocab = [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]
    new_tokenizer = WordPieceTokenizer(old_vocab + words, lowercase=tokenizer.lowercase)
    pieces = [[tokenizer.token_to_id(p) for p in tokenizer.tokenize(w)] for w in words]  # old ids
    state = model.state_dict()
    embeddings, bias = state["bert.embeddings.word_embeddings.weight"], state["predictions.bias"]  # (V, D), (V,)
    rows = torch.stack([embeddings[ids].mean(0) for ids in pieces]) if words else embeddings[:0]  # (V', D)
    state["bert.embeddings.word_embeddings.weight"] = state["predictions.decoder.weight"] = torch.cat([embeddings, rows])
    state["predictions.bias"] = torch.cat([bias, torch.stack([bias[ids].mean() for ids in pieces]) if words else bias[:0]])
    config = dataclasses.replace(model.config, vocab_size=new_tokenizer.vocab_size)
    new_model = BertForPreTraining(config).to(embeddings.device)
    new_model.load_state_dict(state)
    return new_model.train(model.training), new_tokenizer


def continue_pretraining(model: BertForPreTraining, tokenizer: WordPieceTokenizer,
                         documents: Sequence[Sequence[str]], steps: int, lr: float = 1e-3,
                         embedding_lr: float | None = None, batch_size: int = 64, seed: int = 0,
                         progress: bool = False, device: str = "cpu") -> BertForPreTraining:
    """``steps`` more masked-LM steps of ``model`` (in place) on pairs of consecutive sentences of
    ``documents`` (lists of sentences); ``embedding_lr``: the word embeddings' own learning rate
    (new rows need bigger steps). Returns the model in eval mode."""
    pairs = PairDataset(make_pairs(documents, "mlm"), tokenizer)
    loader = DataLoader(pairs, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed),
                        collate_fn=MaskingCollator(tokenizer, sentence_labels=False))
    groups = None
    if embedding_lr is not None:
        groups = [{"params": [model.bert.embeddings.word_embeddings.weight], "lr": embedding_lr}]
    config = TrainConfig(max_steps=steps, lr=lr, warmup_ratio=0.06, seed=seed, progress=progress, device=device)
    train(model, loader, pretraining_step, config, param_groups=groups)
    return model.eval()
