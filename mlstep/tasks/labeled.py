"""Labeled tasks for fine-tuning and distillation: encode a dataset, train, predict, score.

Chapters 06 and 07 fine-tune on the offline corpus's sentiment, NLI and tagging sets. The steps are
always the same, so they live here:

- :func:`encode_classification` / :func:`encode_tagging` turn a ``datasets.Dataset`` (or a list of
  dicts) into a :class:`TensorDataset` of padded tensors; tagging labels go on the first piece of
  each word, −100 elsewhere (first-subword labeling).
- :func:`fit` runs :func:`mlstep.train.train` on shuffled batches with a :class:`~mlstep.train.TrainConfig`;
  :func:`finetune_config` is the course's fine-tuning config (10 % warmup, then linear decay, on the CPU).
- :func:`predict`, :func:`evaluate_classifier` and :func:`evaluate_tagger` score a model: accuracy,
  or entity-level F1 on words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from mlstep.crf import BertCRFTagger
from mlstep.finetune import MODEL_INPUTS, classification_step
from mlstep.metrics import accuracy, entity_f1
from mlstep.tokenizers.wordpiece import WordPieceTokenizer
from mlstep.tools.runtime import IGNORE_INDEX, eval_mode, get_device
from mlstep.train import History, TrainConfig, train

__all__ = ["TensorDataset", "concat_datasets", "encode_classification", "encode_tagging", "trim_padding", "finetune_config", "fit",
           "predict", "evaluate_classifier", "evaluate_tagger", "predict_tags", "word_accuracy",
           "align_labels_to_pieces", "pieces_to_word_predictions"]


class TensorDataset(Dataset):
    """Rows of a dict of equally long tensors; ``DataLoader`` batches it into a dict of tensors."""

    def __init__(self, tensors: Mapping[str, Tensor], extra: Mapping[str, list] | None = None):
        lengths = {len(v) for v in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"all tensors need the same length, got { {k: len(v) for k, v in tensors.items()} }")
        if not lengths or 0 in lengths:
            raise ValueError("empty dataset: nothing to encode")
        self.tensors = dict(tensors)
        self.extra = dict(extra or {})  # per-row Python data (e.g. word ids) kept for evaluation

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}

    def subset(self, n: int) -> TensorDataset:
        """The first ``n`` rows (for label-budget experiments)."""
        return TensorDataset({k: v[:n] for k, v in self.tensors.items()}, {k: v[:n] for k, v in self.extra.items()})


def concat_datasets(*datasets: TensorDataset, pad_id: int = 0) -> TensorDataset:
    """Rows of several encoded datasets in one, padded to the longest sequence.

    Inputs are padded with ``pad_id`` (0 in the course's tokenizer), segment ids and attention
    masks with 0, and per-token labels with −100 (ignored by the loss). ``extra`` data is dropped.
    """
    if not datasets:
        raise ValueError("concat_datasets needs at least one dataset")
    keys = set(datasets[0].tensors)
    if any(set(d.tensors) != keys for d in datasets):
        raise ValueError(f"datasets have different columns: {[sorted(d.tensors) for d in datasets]}")
    length = max(t.shape[1] for d in datasets for t in d.tensors.values() if t.dim() == 2)
    fill = {"input_ids": pad_id, "labels": IGNORE_INDEX}

    def pad(key: str, t: Tensor) -> Tensor:  # (N, T) -> (N, length); 1-D columns unchanged
        return F.pad(t, (0, length - t.shape[1]), value=fill.get(key, 0)) if t.dim() == 2 else t

    return TensorDataset({k: torch.cat([pad(k, d.tensors[k]) for d in datasets]) for k in datasets[0].tensors})


def _column(dataset: Any, key: str) -> list:
    if isinstance(dataset, Sequence) and not hasattr(dataset, "column_names"):
        return [row[key] for row in dataset]
    return list(dataset[key])


def encode_classification(dataset: Any, tokenizer: WordPieceTokenizer, text_key: str = "text",
                          pair_key: str | None = None, label_key: str = "label", max_length: int = 64) -> TensorDataset:
    """Encode ``text`` (and ``pair``, as segment B) with ``[CLS] … [SEP]`` and keep the labels."""
    texts = _column(dataset, text_key)
    pairs = _column(dataset, pair_key) if pair_key else None
    enc = tokenizer.encode_batch(texts, pairs=pairs, max_length=max_length, padding="longest")
    labels = torch.tensor(_column(dataset, label_key), dtype=torch.long)
    return TensorDataset({**{k: enc[k] for k in MODEL_INPUTS}, "labels": labels})


def align_labels_to_pieces(word_labels: Sequence[int], word_ids: Sequence[int | None]) -> list[int]:
    """First-piece labelling: each word's label on its first piece, −100 on the other pieces and
    on the specials (``word_ids`` is None there), e.g. ``play ##ing golf`` → ``[3, -100, 5]``."""
    labels, previous = [], None
    for wid in word_ids:
        if wid is not None and not 0 <= wid < len(word_labels):
            raise ValueError(f"word_ids refers to word {wid} but there are {len(word_labels)} word labels")
        labels.append(IGNORE_INDEX if wid is None or wid == previous else int(word_labels[wid]))
        previous = wid
    return labels


def pieces_to_word_predictions(pred_ids: Sequence[int], word_ids: Sequence[int | None]) -> list[int]:
    """One prediction per word, its first piece's, for words ``0 .. max(word_ids)`` present."""
    first: dict[int, int] = {}
    for pred, wid in zip(pred_ids, word_ids, strict=True):
        if wid is not None and wid not in first:
            first[wid] = int(pred)
    return [first[w] for w in sorted(first)]


def encode_tagging(dataset: Any, tokenizer: WordPieceTokenizer, tag_names: Sequence[str],
                   tokens_key: str = "tokens", tags_key: str = "tags", max_length: int = 64) -> TensorDataset:
    """Encode pre-tokenised sentences; each word's tag id goes on its first piece, −100 elsewhere.

    The gold word-level tags and the piece→word map are kept in ``extra`` for :func:`evaluate_tagger`.
    """
    index = {t: i for i, t in enumerate(tag_names)}
    words, tags = _column(dataset, tokens_key), _column(dataset, tags_key)
    enc = tokenizer.encode_batch(words, max_length=max_length, padding="longest", is_pretokenized=True)
    rows = []
    for word_tags, word_ids in zip(tags, enc["word_ids"]):
        try:
            ids = [index[t] for t in word_tags]
        except KeyError as e:
            raise ValueError(f"unknown tag {e.args[0]!r}; known: {list(tag_names)}") from None
        rows.append(align_labels_to_pieces(ids, word_ids))
    labels = torch.tensor(rows, dtype=torch.long)  # (N, T)
    return TensorDataset({**{k: enc[k] for k in MODEL_INPUTS}, "labels": labels},
                         extra={"word_ids": enc["word_ids"], "tags": [list(t) for t in tags],
                                "words": [list(w) for w in words]})


def trim_padding(rows: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack rows of a :class:`TensorDataset` into a batch cut to its longest real row.

    Datasets are padded to their longest sequence; a batch of short ones would spend most of its
    work on padding. The model inputs and per-token ``labels`` lose their all-padding columns
    (padding is on the right); every other column is stacked unchanged.
    """
    batch = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
    if "attention_mask" not in batch:
        return batch
    T = int(batch["attention_mask"].sum(1).max())  # (B, T) -> the longest real row
    cut = [*MODEL_INPUTS, *(["labels"] if batch.get("labels", torch.zeros(1)).dim() == 2 else [])]
    return {k: v[:, :T] if k in cut else v for k, v in batch.items()}


def finetune_config(steps: int, lr: float = 1e-3, seed: int = 0, **overrides: Any) -> TrainConfig:
    """The chapters' fine-tuning run: ``steps`` optimizer steps at peak ``lr``, a 10 % warmup then
    linear decay to 0, on the CPU (where the chapters' numbers were measured), no progress bar.
    ``overrides`` set other :class:`~mlstep.train.TrainConfig` fields (``device="auto"`` for a GPU)."""
    return TrainConfig(**{"max_steps": steps, "lr": lr, "seed": seed, "warmup_ratio": 0.1, "device": "cpu",
                          "progress": False, **overrides})


def fit(model: nn.Module, data: TensorDataset, config: TrainConfig, *, batch_size: int = 32,
        step_fn: Callable = classification_step, param_groups: list | None = None,
        eval_fn: Callable | None = None) -> History:
    """Train ``model`` on ``data`` as ``config`` says, with :func:`mlstep.train.train`: shuffled
    batches of ``batch_size`` rows (seeded by ``config.seed``), each cut to its longest row
    (:func:`trim_padding`). On a GPU, move evaluation inputs to the model's device too."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a mlstep.train.TrainConfig (e.g. finetune_config(steps, lr)), "
                        f"got {type(config).__name__}")
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=trim_padding,
                        generator=torch.Generator().manual_seed(config.seed or 0),
                        pin_memory=get_device(config.device).type == "cuda")  # faster copies to the GPU
    return train(model, loader, step_fn, config, eval_fn=eval_fn, param_groups=param_groups)


@torch.no_grad()
def _batched(model: nn.Module, data: TensorDataset, run: Callable, batch_size: int = 256) -> list:
    """``run(inputs, rows)`` on ``data`` batch by batch, in eval mode; one result per batch."""
    device = next(model.parameters()).device
    out = []
    with eval_mode(model):
        for start in range(0, len(data), batch_size):
            rows = slice(start, start + batch_size)
            out.append(run({k: v[rows].to(device) for k, v in data.tensors.items() if k in MODEL_INPUTS}, rows))
    return out


@torch.no_grad()
def predict(model: nn.Module, data: TensorDataset, batch_size: int = 256) -> Tensor:
    """Logits for every row of ``data``: ``(N, C)`` for sequences, ``(N, T, C)`` for tokens.

    Rows run shortest first, each batch cut to its longest row (padding is on the right, so a
    real token's logits do not change); they come back in the rows' order. Logits at padding
    positions mean nothing (0 where a batch was cut).
    """
    device = next(model.parameters()).device
    inputs = {k: v for k, v in data.tensors.items() if k in MODEL_INPUTS}
    N, T = inputs["input_ids"].shape
    lengths = inputs["attention_mask"].sum(1) if "attention_mask" in inputs else torch.full((N,), T)
    order = lengths.argsort(stable=True)  # (N,)
    out = None
    with eval_mode(model):
        for start in range(0, N, batch_size):
            rows = order[start:start + batch_size]
            t = int(lengths[rows].max())
            logits = model(**{k: v[rows, :t].to(device) for k, v in inputs.items()}).logits.float().cpu()
            if out is None:  # (N, C), or (N, T, C) for per-token logits
                out = torch.zeros(N, *([T] if logits.dim() == 3 else []), logits.shape[-1])
            if logits.dim() == 3:
                out[rows, :t] = logits  # (b, t, C) into (N, T, C)
            else:
                out[rows] = logits  # (b, C) into (N, C)
    return out


def evaluate_classifier(model: nn.Module, data: TensorDataset) -> float:
    """Accuracy of ``model`` on ``data``."""
    return accuracy(predict(model, data).argmax(-1), data.tensors["labels"])


def predict_tags(model: nn.Module, data: TensorDataset, tag_names: Sequence[str]) -> list[list[str]]:
    """The predicted tag of every word of every row: the first piece's argmax, or, for a
    :class:`~mlstep.crf.BertCRFTagger`, the whole sentence's best sequence (Viterbi)."""
    if "word_ids" not in data.extra:
        raise ValueError("data has no word ids: encode it with encode_tagging")
    if isinstance(model, BertCRFTagger):
        word_preds = _viterbi_words(model, data)
    else:
        piece_preds = predict(model, data).argmax(-1)  # (N, T)
        word_preds = [pieces_to_word_predictions(row, wids) for row, wids in zip(piece_preds.tolist(), data.extra["word_ids"])]
    return [[tag_names[i] for i in row] for row in word_preds]


def evaluate_tagger(model: nn.Module, data: TensorDataset, tag_names: Sequence[str]) -> dict[str, float]:
    """Entity-level precision / recall / F1 over words (:func:`predict_tags`), as CoNLL scores."""
    predicted = predict_tags(model, data, tag_names)
    gold = [tags[:len(p)] for tags, p in zip(data.extra["tags"], predicted)]  # truncated sentences
    result = entity_f1(predicted, gold)
    return {k: result[k] for k in ("precision", "recall", "f1")}


def word_accuracy(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]],
                  words: Sequence[Sequence[str]], seen: set[str] | None = None) -> dict[str, float]:
    """Tag accuracy over words, and with ``seen`` (lower-cased words of the labeled data) also on
    the words ``seen`` and ``unseen`` there, and the unseen words' share. Words that truncation cut
    off (``predicted`` shorter than ``gold``) count as wrong."""
    hits = {"seen": [], "unseen": []}
    for pred, tags, sentence in zip(predicted, gold, words, strict=True):
        for i, (tag, word) in enumerate(zip(tags, sentence, strict=True)):
            kind = "seen" if seen is None or word.lower() in seen else "unseen"
            hits[kind].append(i < len(pred) and pred[i] == tag)
    every = hits["seen"] + hits["unseen"]
    if not every:
        raise ValueError("no words to score")
    result = {"accuracy": sum(every) / len(every)}
    if seen is not None:
        result["unseen_share"] = len(hits["unseen"]) / len(every)
        for kind, h in hits.items():
            result[f"{kind}_accuracy"] = sum(h) / len(h) if h else float("nan")
    return result


def _viterbi_words(model: BertCRFTagger, data: TensorDataset) -> list[list[int]]:
    """A CRF tagger's best tag sequence over the words of every row (first pieces start words)."""
    starts = torch.tensor([[w is not None and (j == 0 or w != wids[j - 1]) for j, w in enumerate(wids)]
                           for wids in data.extra["word_ids"]])  # (N, T)
    batches = _batched(model, data, lambda inputs, rows: model.decode(
        **inputs, starts=starts[rows].to(inputs["input_ids"].device)))
    return [path for batch in batches for path in batch]
