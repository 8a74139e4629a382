"""Language metrics: perplexity (how surprised a language model is) and BLEU (how much a generated
text overlaps with reference texts).

BLEU (Papineni et al., 2002) counts the n-grams (n = 1..4) of each hypothesis that also occur in
one of its references — each at most as often as in the reference that has it most often — over
the whole corpus, and combines the four precisions geometrically::

    BLEU = BP · exp(¼ Σ_n log p_n),   BP = min(1, exp(1 − r / c))

where ``c`` is the total hypothesis length and ``r`` the total length of the references closest in
length to each hypothesis; the brevity penalty BP stops a system from scoring by saying little.
:func:`bleu` equals ``sacrebleu.corpus_bleu`` with its defaults (tested): the ``13a`` tokenisation,
no lower-casing, and the ``exp`` smoothing for an order with no match (its precision becomes
1 / (2^k · total), k counting such orders).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from mlstep.tools.checks import check_strings, check_type

__all__ = ["perplexity", "bleu", "bleu_tokenize"]

# sacrebleu's "13a" rules (mteval-v13a.pl, WMT's): punctuation becomes its own token; periods and
# commas too, except between digits; a dash after a digit.
_13A_RULES = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]
_ENTITIES = {"&quot;": '"', "&amp;": "&", "&lt;": "<", "&gt;": ">"}
MAX_ORDER = 4


def perplexity(mean_nll) -> float:
    """``exp(mean negative log-likelihood)``: the effective number of equally likely choices.

    Args:
        mean_nll: the mean per-token cross-entropy in nats (``F.cross_entropy``'s default mean),
            as a float or a one-element tensor.

    Returns:
        The perplexity as a float; ``inf`` when ``exp`` would overflow (a diverged run), rather
        than an ``OverflowError`` in the middle of a training log.
    """
    if isinstance(mean_nll, torch.Tensor):
        if mean_nll.numel() != 1:
            raise ValueError(
                f"mean_nll must be one number (the mean NLL), got a tensor of shape "
                f"{tuple(mean_nll.shape)}; pass loss.mean()"
            )
        mean_nll = mean_nll.item()
    check_type("mean_nll", mean_nll, (int, float, np.floating, np.integer), "a number (the mean NLL in nats)")
    x = float(mean_nll)
    if math.isnan(x):
        raise ValueError("mean_nll is NaN (the loss diverged or was averaged over nothing)")
    if x < -1e-6:  # tiny negatives are float rounding of a perfect prediction
        raise ValueError(f"mean_nll must be >= 0 (a negative log-likelihood), got {x}")
    if x > math.log(np.finfo(np.float64).max):
        return math.inf
    return math.exp(max(x, 0.0))


def bleu_tokenize(text: str) -> list[str]:
    """The tokens BLEU counts: sacrebleu's default ``13a`` tokenisation of ``text``."""
    check_type("text", text, str, "a str")
    text = text.rstrip().replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, char in _ENTITIES.items():
        text = text.replace(entity, char)
    text = f" {text} "
    for pattern, replacement in _13A_RULES:
        text = pattern.sub(replacement, text)
    return text.split()


def _ngrams(tokens: list[str]) -> Counter:
    """Every n-gram of ``tokens`` for n = 1..4, with its count."""
    return Counter(tuple(tokens[i:i + n]) for n in range(1, MAX_ORDER + 1) for i in range(len(tokens) - n + 1))


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 on a 0–100 scale, equal to ``sacrebleu.corpus_bleu`` with its defaults.

    Args:
        hypotheses: the generated texts, one per segment.
        references: for each hypothesis, a list of one or more reference texts (the number may
            differ between segments). Note the layout: sacrebleu takes the transpose, one list per
            reference *set*.

    Returns:
        BLEU in [0, 100]: 0 when no n-gram matches (or no hypothesis has four tokens).
    """
    for name, x in (("hypotheses", hypotheses), ("references", references)):
        if isinstance(x, str) or not isinstance(x, Sequence):
            what = "texts" if name == "hypotheses" else "reference lists, one per hypothesis"
            raise TypeError(f"{name} must be a list of {what}, not a {type(x).__name__}")
    hypotheses = check_strings("hypotheses", hypotheses)
    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(f"need one list of references per hypothesis: got {len(hypotheses)} hypotheses "
                         f"and {len(references)} references (lists)")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or not refs:
            raise ValueError(f"references[{i}] must be a non-empty *list* of reference texts, e.g. [['a cat .']]")
        check_strings(f"references[{i}]", refs)
    correct, total = [0] * MAX_ORDER, [0] * MAX_ORDER
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references, strict=True):
        h, rs = bleu_tokenize(hyp), [bleu_tokenize(r) for r in refs]
        hyp_len += len(h)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]  # the closest; the shorter on ties
        clip = Counter()
        for r in rs:
            clip |= _ngrams(r)  # | keeps each n-gram's largest count over the references
        for gram, count in _ngrams(h).items():
            total[len(gram) - 1] += count
            correct[len(gram) - 1] += min(count, clip[gram])
    if not any(correct) or not all(total):
        return 0.0
    log_precision, halvings = 0.0, 1
    for c, t in zip(correct, total):
        if c == 0:  # "exp" smoothing: 1 / (2^k · t) for the k-th order without a match
            halvings *= 2
        log_precision += math.log(100.0 * (c or 1 / halvings) / t)
    brevity = 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_precision / MAX_ORDER)
