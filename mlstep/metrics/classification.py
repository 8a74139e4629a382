"""Classification and tagging metrics: accuracy, precision/recall/F1, confusion matrix, entity-level F1.

Pure numpy; scikit-learn is only the reference the tests compare
against, never a runtime dependency.

* Classification metrics take ``preds`` and ``labels`` as tensors, numpy arrays or (nested) lists
  of class ids of the same shape; every position counts, except positions whose *label* is
  ``ignore_index`` (``-100``, the value PyTorch's ``cross_entropy`` and our MLM / token
  classification labels use for "no prediction asked"). ``preds`` may also be logits with one
  extra trailing class dimension ``(..., C)``: they are reduced with ``argmax(-1)``.
* Precision / recall / F1 follow ``sklearn.metrics.precision_recall_fscore_support`` with
  ``zero_division=0``: a class that is never predicted has precision 0, one that never occurs has
  recall 0, and its F1 is then 0 too.
* Entity-level F1 for BIO tags follows CoNLL's ``conlleval`` (and ``seqeval``'s default mode):
  an entity counts as correct only when its type, start and end all match a gold entity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "accuracy",
    "precision_recall_f1",
    "confusion_matrix",
    "bio_entities",
    "entity_f1",
]

_AVERAGES = ("macro", "micro", "weighted", None)


# --- input handling ------------------------------------------------------------------------------

def _to_numpy(x, name: str) -> np.ndarray:
    """A tensor, array or (nested, rectangular) list as a numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        # numpy has no bfloat16: go through float32 for any floating tensor.
        return (x.float() if x.is_floating_point() else x).numpy()
    try:
        return np.asarray(x)
    except ValueError as e:  # ragged nested lists
        raise ValueError(f"{name} must be rectangular (all rows the same length): {e}") from None


def _as_class_ids(x: np.ndarray, name: str) -> np.ndarray:
    """Integer class ids; floats are accepted only when they hold whole numbers."""
    if x.dtype == bool:
        return x.astype(np.int64)
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.int64)
    if np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)) or not np.all(x == np.round(x)):
            raise TypeError(
                f"{name} must hold integer class ids, got non-integer floats (dtype {x.dtype}); "
                "pass logits with a trailing class dimension (..., C), or argmax them first"
            )
        return x.astype(np.int64)
    raise TypeError(f"{name} must hold integer class ids, got dtype {x.dtype}")


def _prepare(preds, labels, ignore_index: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Flattened ``(preds, labels)`` of class ids with the ignored positions removed. Both (N,)."""
    p = _to_numpy(preds, "preds")
    y = _to_numpy(labels, "labels")
    # Logits (..., C) against labels (...): take the predicted class.
    if p.ndim == y.ndim + 1 and np.issubdtype(p.dtype, np.floating):
        if p.shape[-1] == 0:
            raise ValueError(f"preds look like logits {p.shape} but have no classes")
        if not np.isfinite(p).all():
            raise ValueError("preds look like logits (..., C) but hold NaN or inf: check the model that computed them")
        p = p.argmax(axis=-1)  # (...)
    if p.shape != y.shape:
        raise ValueError(
            f"preds and labels must have the same shape (length mismatch): preds {p.shape}, "
            f"labels {y.shape}"
        )
    p = _as_class_ids(p, "preds").reshape(-1)  # (N,)
    y = _as_class_ids(y, "labels").reshape(-1)  # (N,)
    if y.size == 0:
        raise ValueError("empty input: preds and labels have no elements")
    if ignore_index is not None:
        keep = y != ignore_index
        p, y = p[keep], y[keep]  # (N_kept,)
        if y.size == 0:
            raise ValueError(
                f"every label equals ignore_index={ignore_index}: nothing left to evaluate"
            )
    return p, y


def _check_range(p: np.ndarray, y: np.ndarray, num_classes: int) -> None:
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    for name, x in (("labels", y), ("preds", p)):
        bad = (x < 0) | (x >= num_classes)
        if bad.any():
            raise ValueError(
                f"{name} out of range for num_classes={num_classes}: found "
                f"{sorted(set(x[bad].tolist()))[:10]} (valid ids are 0..{num_classes - 1})"
            )


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den == 0`` (sklearn's ``zero_division=0``)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


# --- classification ------------------------------------------------------------------------------

def accuracy(preds, labels, ignore_index: int | None = -100) -> float:
    """Fraction of positions where the prediction equals the label.

    Args:
        preds: predicted class ids, any shape, or logits with one extra trailing class dim.
        labels: true class ids, same shape as ``preds`` (without the class dim).
        ignore_index: label value whose positions are skipped (``None`` keeps every position).

    Returns:
        The accuracy in ``[0, 1]`` as a Python float.
    """
    p, y = _prepare(preds, labels, ignore_index)
    return float(np.mean(p == y))


def precision_recall_f1(
    preds,
    labels,
    average: str | None = "macro",
    num_classes: int | None = None,
    ignore_index: int | None = -100,
) -> tuple[float, float, float] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1, as ``sklearn.metrics.precision_recall_fscore_support``.

    Args:
        preds: predicted class ids (or logits with a trailing class dim).
        labels: true class ids, same shape.
        average: ``"macro"`` (unweighted mean over classes), ``"micro"`` (from the total true
            positives, false positives and false negatives; equals accuracy for single-label
            classification), ``"weighted"`` (mean weighted by each class's number of true
            instances), or ``None`` (per-class arrays).
        num_classes: if given, the classes are ``0..num_classes-1`` (absent ones included, with
            scores 0, as sklearn's ``labels=range(num_classes)``) and ids outside that range are
            an error. If None, the classes are the sorted union of the ids in ``labels`` and
            ``preds`` (sklearn's default); per-class arrays are then in that order, so pass
            ``num_classes`` when you want index ``i`` to be class ``i``.
        ignore_index: label value whose positions are skipped (``None`` keeps every position).

    Returns:
        ``(precision, recall, f1)``: floats, or ``(C,)`` float arrays when ``average`` is None.
        A zero denominator gives 0.0 (sklearn's ``zero_division=0``). Macro F1 is the mean of the
        per-class F1 scores, not the F1 of the macro precision and recall.
    """
    if average not in _AVERAGES:
        raise ValueError(f"unknown average {average!r}; choose one of {_AVERAGES}")
    p, y = _prepare(preds, labels, ignore_index)
    if num_classes is not None:
        _check_range(p, y, num_classes)
        classes = np.arange(num_classes)
    else:
        classes = np.union1d(y, p)  # sorted class ids present in either
    # Map ids to 0..C-1 so one confusion matrix holds every count.
    cm = _confusion(np.searchsorted(classes, p), np.searchsorted(classes, y), len(classes))
    tp = np.diag(cm).astype(float)  # (C,)
    pred_count = cm.sum(axis=0).astype(float)  # (C,) times each class was predicted
    support = cm.sum(axis=1).astype(float)  # (C,) times each class is the label

    if average == "micro":
        # Every wrong prediction is one false positive (for the predicted class) and one false
        # negative (for the true class), so micro precision = recall = F1 = accuracy here.
        prec = float(_safe_div(tp.sum(), pred_count.sum()))
        rec = float(_safe_div(tp.sum(), support.sum()))
        f1 = float(_safe_div(2 * prec * rec, prec + rec))
        return prec, rec, f1

    prec_c = _safe_div(tp, pred_count)  # (C,)
    rec_c = _safe_div(tp, support)  # (C,)
    f1_c = _safe_div(2 * tp, pred_count + support)  # (C,) = 2PR / (P + R), safe when P = R = 0
    if average is None:
        return prec_c, rec_c, f1_c
    weights = np.ones_like(support) if average == "macro" else support
    if weights.sum() == 0:
        return 0.0, 0.0, 0.0
    return tuple(float(np.average(m, weights=weights)) for m in (prec_c, rec_c, f1_c))


def _confusion(p: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Counts ``(n, n)``, rows = true class, columns = predicted class, for ids in ``0..n-1``."""
    return np.bincount(y * n + p, minlength=n * n).reshape(n, n)  # (n*n,) -> (n, n)


def confusion_matrix(
    preds, labels, num_classes: int | None = None, ignore_index: int | None = -100
) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Args:
        preds: predicted class ids (or logits with a trailing class dim).
        labels: true class ids, same shape.
        num_classes: size of the matrix; default ``max(labels, preds) + 1``, so row/column ``i``
            is always class id ``i`` (sklearn instead keeps only the ids that occur).
        ignore_index: label value whose positions are skipped (``None`` keeps every position).

    Returns:
        An int64 array ``(num_classes, num_classes)``: ``cm[i, j]`` is the number of positions
        whose label is ``i`` and prediction ``j`` (rows = true, columns = predicted, as sklearn).
    """
    p, y = _prepare(preds, labels, ignore_index)
    if num_classes is None:
        if min(p.min(), y.min()) < 0:
            raise ValueError(
                "preds and labels must hold class ids >= 0 for a confusion matrix, found "
                f"{min(p.min(), y.min())} (set ignore_index if it marks skipped positions)"
            )
        num_classes = int(max(p.max(), y.max())) + 1
    _check_range(p, y, num_classes)
    return _confusion(p, y, int(num_classes)).astype(np.int64)


# --- entity-level F1 for BIO tags ---------------------------------------------------------------

def _split_tag(tag: str, position: int, name: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "")``; a bare ``"B"`` has type ``""``."""
    if not isinstance(tag, str):
        raise TypeError(f"{name} must hold BIO tags as strings, got {tag!r} at position {position}")
    prefix, _, etype = tag.partition("-")
    if prefix not in ("B", "I", "O") or (prefix == "O" and etype):
        raise ValueError(
            f"bad BIO tag {tag!r} in {name} at position {position}: expected 'O', 'B-TYPE' or 'I-TYPE'"
        )
    return prefix, etype


def bio_entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The entities in one sentence of BIO tags, as conlleval reads them.

    An entity starts at ``B-X``, and also at an ``I-X`` that follows ``O``, the sentence start, or
    a tag of another type (conlleval's lenient reading of IOB1-style data). It continues while the
    next tag is ``I-X`` of the same type; ``B-X B-X`` is two adjacent entities.

    Args:
        tags: e.g. ``["B-PER", "I-PER", "O", "B-LOC"]``.

    Returns:
        A set of ``(type, start, end)`` with ``end`` exclusive, so ``tokens[start:end]`` is the
        entity; e.g. ``{("PER", 0, 2), ("LOC", 3, 4)}``.
    """
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise TypeError(f"tags must be a list of BIO tags, got {type(tags).__name__}; wrap one tag in a list")
    return _entities(tags, "tags")


def _entities(tags: Sequence[str], name: str) -> set[tuple[str, int, int]]:
    """:func:`bio_entities` of ``tags``, the argument ``name`` (in messages)."""
    entities: set[tuple[str, int, int]] = set()
    current: tuple[str, int] | None = None  # (type, start) of the entity being read
    for i, tag in enumerate(tags):
        prefix, etype = _split_tag(tag, i, name)
        continues = prefix == "I" and current is not None and current[0] == etype
        if current is not None and not continues:
            entities.add((current[0], current[1], i))
            current = None
        if prefix == "B" or (prefix == "I" and not continues):
            current = (etype, i)
    if current is not None:
        entities.add((current[0], current[1], len(tags)))
    return entities


def _prf(correct: int, n_pred: int, n_gold: int) -> dict[str, float]:
    p = correct / n_pred if n_pred else 0.0
    r = correct / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def _as_tag_seqs(seqs, name: str, id2label) -> list[list]:
    """A batch of tag sequences as lists; a flat list of tags (or of ids) is one sentence."""
    if isinstance(seqs, np.ndarray) and seqs.dtype.kind in "US":
        seqs = seqs.tolist()  # an array of tag strings
    if isinstance(seqs, (torch.Tensor, np.ndarray)):
        if id2label is None:
            raise TypeError(f"{name} is a tensor/array of ids: pass id2label to map ids to tags")
        seqs = _to_numpy(seqs, name).tolist()
    if isinstance(seqs, str):
        raise TypeError(f"{name} must be a list of tag sequences, got a single string")
    seqs = list(seqs)
    if seqs and all(isinstance(t, (str, int, np.integer)) for t in seqs):
        seqs = [seqs]  # one sentence given flat
    return [list(s) for s in seqs]


def _id_to_tag(tag_id, id2label, sentence: int) -> str:
    try:
        if int(tag_id) < 0:  # a list would silently index from the end
            raise ValueError
        return id2label[int(tag_id)]
    except (KeyError, IndexError, TypeError, ValueError):
        raise ValueError(f"sentence {sentence}: tag id {tag_id!r} is not in id2label") from None


def entity_f1(
    pred_tag_seqs,
    gold_tag_seqs,
    per_type: bool = False,
    id2label: Sequence[str] | Mapping[int, str] | None = None,
    ignore_index: int | None = -100,
) -> dict:
    """Entity-level precision, recall and F1 over sentences of BIO tags (CoNLL / seqeval).

    An entity is correct only when type, start and end all match a gold entity: a partial overlap
    or a wrong type is one false positive *and* one false negative. Counts are summed over all
    sentences (micro average) before dividing; a zero denominator gives 0.0.

    Args:
        pred_tag_seqs: predicted tags, one sequence per sentence (a flat list of strings is taken
            as one sentence). With ``id2label``, class ids (lists or a ``(B, T)`` tensor).
        gold_tag_seqs: gold tags, the same number of sentences, each the same length.
        per_type: also return scores for each entity type under ``"per_type"``.
        id2label: maps class ids to tag strings (a list or dict); needed when tags are ids.
        ignore_index: with ``id2label``, positions whose *gold* id equals it (e.g. padding or
            non-first sub-words labelled -100) are dropped from both sequences first.

    Returns:
        ``{"precision", "recall", "f1"}`` floats, plus, if ``per_type``, ``"per_type"``:
        ``{type: {"precision", "recall", "f1", "support"}}`` (support = number of gold entities).
    """
    preds = _as_tag_seqs(pred_tag_seqs, "pred_tag_seqs", id2label)
    golds = _as_tag_seqs(gold_tag_seqs, "gold_tag_seqs", id2label)
    if len(preds) != len(golds):
        raise ValueError(
            f"length mismatch: pred_tag_seqs has {len(preds)} sentences but gold_tag_seqs {len(golds)}"
        )
    if not golds:
        raise ValueError("empty input: pred_tag_seqs and gold_tag_seqs hold no sentence to evaluate")

    counts: dict[str, list[int]] = {}  # type -> [correct, n_pred, n_gold]
    for k, (pred, gold) in enumerate(zip(preds, golds, strict=True)):
        if len(pred) != len(gold):
            raise ValueError(
                f"sentence {k}: pred_tag_seqs has {len(pred)} tags but gold_tag_seqs {len(gold)}"
            )
        if id2label is not None:
            keep = [i for i, g in enumerate(gold) if ignore_index is None or g != ignore_index]
            pred = [_id_to_tag(pred[i], id2label, k) for i in keep]
            gold = [_id_to_tag(gold[i], id2label, k) for i in keep]
        p_ents, g_ents = _entities(pred, f"pred_tag_seqs[{k}]"), _entities(gold, f"gold_tag_seqs[{k}]")
        for ents, slot in ((p_ents & g_ents, 0), (p_ents, 1), (g_ents, 2)):
            for etype, _, _ in ents:
                counts.setdefault(etype, [0, 0, 0])[slot] += 1

    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    result: dict = _prf(*total)
    if per_type:
        result["per_type"] = {
            t: {**_prf(*c), "support": c[2]} for t, c in sorted(counts.items())
        }
    return result
