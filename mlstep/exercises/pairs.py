"""Checks for chapter 05: NSP and SOP sentence pairs.

Pair building is random, so the checks test exact invariants and the label rates on enough
pairs that a correct answer passes by a wide margin (NSP: 175 pairs against 35–65 % is 4.5 SD per
seed; SOP: 421 pairs, 6.2 SD).
"""

from __future__ import annotations

import copy
import numbers
from collections import Counter
from collections.abc import Callable
from typing import Any

from torch import Tensor

from mlstep.exercises._core import _call, _one_line, _passed, _register
from mlstep.masking import sop_pairs

__all__ = ["check_nsp_pairs", "check_sop_pairs"]


# --- NSP pairs -----------------------------------------------------------------------------------

def _nsp_documents() -> list[list[str]]:
    """12 documents of 1 to 30 distinct sentences (each sentence names its document and place)."""
    sizes = (14, 1, 27, 9, 22, 5, 30, 17, 11, 24, 8, 19)
    return [[f"Document {d}, sentence {j}." for j in range(n)] for d, n in enumerate(sizes)]


def _as_pairs(result: Any, meaning: str = "0 (b is next) or 1 (random b)") -> list[tuple[Any, Any, int]] | str:
    """The learner's list of ``(a, b, label)``, or a message saying why it is not one."""
    if isinstance(result, (str, bytes)) or not isinstance(result, (list, tuple)):
        return f"expected a list of (a, b, label) tuples, got {type(result).__name__}"
    pairs = []
    for k, p in enumerate(result):
        if not isinstance(p, (tuple, list)) or len(p) != 3:
            what = f"{type(p).__name__}" + (f" of length {len(p)}" if isinstance(p, (tuple, list)) else "")
            return f"pair {k} is a {what}; each pair must be a tuple (a, b, label) of length 3"
        a, b, label = p
        if isinstance(label, Tensor) and label.numel() == 1:
            label = label.item()
        if not isinstance(label, numbers.Integral) or int(label) not in (0, 1):
            return f"pair {k} has label {_one_line(repr(label))[:40]}; labels are the ints {meaning}"
        pairs.append((a, b, int(label)))
    return pairs


def _nsp_problem(pairs: list[tuple[Any, Any, int]], docs: list[list[str]]) -> str | None:
    """What is wrong with one list of pairs, or None."""
    where_is = {s: (d, j) for d, doc in enumerate(docs) for j, s in enumerate(doc)}  # sentence -> place
    anchors = Counter(s for doc in docs for s in doc[:-1])  # every sentence that has a next one
    n = sum(anchors.values())
    if len(pairs) != n:
        return (f"expected {n} pairs (one per pair of consecutive sentences in a document), got {len(pairs)}")
    for k, (a, b, _) in enumerate(pairs):
        for name, s in (("a", a), ("b", b)):
            if not isinstance(s, str) or s not in where_is:
                return f"pair {k}: {name} = {_one_line(repr(s))[:60]} is not one of the sentences of the documents"
    if Counter(a for a, _, _ in pairs) != anchors:
        a = next(iter((Counter(a for a, _, _ in pairs) - anchors) or (anchors - Counter(a for a, _, _ in pairs))))
        return (f"every sentence that has a next one in its document must be `a` exactly once; "
                f"{a!r} is not (the last sentence of a document starts no pair)")
    is_next = [where_is[b] == (where_is[a][0], where_is[a][1] + 1) for a, b, _ in pairs]
    same_doc = [where_is[b][0] == where_is[a][0] for a, b, _ in pairs]
    labels = [label for _, _, label in pairs]
    n1 = sum(labels)
    if 0 < n1 < n and all(nx == (lab == 1) for nx, lab in zip(is_next, labels, strict=True)):
        return ("label convention flipped: label 0 means 'b IS the next sentence', 1 means 'b is random' "
                "(Hugging Face's convention)")
    for k, ((a, b, label), nx, same) in enumerate(zip(pairs, is_next, same_doc, strict=True)):
        if label == 0 and not nx:
            return (f"pair {k} has label 0 ('b is next') but b is not the sentence after a: "
                    f"a = {a!r}, b = {b!r}")
        if label == 1 and same:
            return (f"random sentence drawn from the same document (pair {k}: a = {a!r}, b = {b!r}); a random "
                    "b must come from ANOTHER document, or topic alone would not give it away")
    if n1 == 0:
        return "never random: every pair has label 0; about half must get a random b from another document (label 1)"
    if n1 == n:
        return "always random: every pair has label 1; about half must keep the true next sentence (label 0)"
    if not 0.35 <= n1 / n <= 0.65:
        return f"{n1 / n:.0%} of your pairs are random (label 1); expected about 50 %"
    randoms = [b for (_, b, label) in pairs if label == 1]
    if len(set(randoms)) < len(randoms) / 3:
        return (f"your {len(randoms)} random sentences are only {len(set(randoms))} different ones: draw each "
                "uniformly from the sentences of the other documents")
    return None


@_register
def check_nsp_pairs(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(documents: list[list[str]], seed: int) -> list[(a, b, label)]``: NSP pairs.

    For each pair of consecutive sentences ``(a, b)`` of a document, keep ``b`` with label 0 or
    replace it with a random sentence of ANOTHER document with label 1, about half each; the
    same seed gives the same pairs. Checked on ~200 pairs for two seeds (the reference is
    :func:`mlstep.nsp_pairs`, which follows the same rules).

    Returns:
        True if every case passes (a ✅/❌ line is printed either way).
    """
    docs = _nsp_documents()
    return _check_pair_builder(fn, docs, (7, 2024), "0 (b is next) or 1 (random b)", "shuffled",
                               lambda pairs: _nsp_problem(pairs, docs))


# --- SOP pairs -----------------------------------------------------------------------------------

def _sop_documents() -> list[list[str]]:
    """23 documents of 0 to 45 distinct sentences: 421 consecutive pairs, enough for the 35–65 %
    share to hold a correct answer's independent coins by 6 standard deviations."""
    sizes = (14, 1, 27, 9, 22, 2, 30, 17, 11, 24, 8, 19, 40, 35, 28, 33, 21, 45, 16, 26, 3, 0, 12)
    return [[f"Document {d}, sentence {j}." for j in range(n)] for d, n in enumerate(sizes)]


def _sop_problem(pairs: list[tuple[Any, Any, int]], docs: list[list[str]], n: int) -> str | None:
    """What is wrong with one list of SOP pairs (``n`` = the reference's number of pairs), or None."""
    where_is = {s: (d, j) for d, doc in enumerate(docs) for j, s in enumerate(doc)}  # sentence -> place
    if len(pairs) != n:
        return (f"expected {n} pairs (one per pair of consecutive sentences in a document, the last "
                f"sentence starts none), got {len(pairs)}")
    for k, (a, b, _) in enumerate(pairs):
        for name, s in (("a", a), ("b", b)):
            if not isinstance(s, str) or s not in where_is:
                return f"pair {k}: {name} = {_one_line(repr(s))[:60]} is not one of the sentences of the documents"
    places = [(where_is[a], where_is[b]) for a, b, _ in pairs]
    for k, ((pa, pb), (a, b, _)) in enumerate(zip(places, pairs, strict=True)):
        if pa[0] != pb[0]:
            return (f"pairs drawn across documents (pair {k}: a = {a!r}, b = {b!r}): that is NSP, not SOP; "
                    "sentence-order prediction keeps both sentences of a consecutive pair of ONE document "
                    "and only swaps their order")
    in_order = [pb[1] == pa[1] + 1 for pa, pb in places]
    swapped = [pa[1] == pb[1] + 1 for pa, pb in places]
    for k, ((a, b, _), fwd, back) in enumerate(zip(pairs, in_order, swapped, strict=True)):
        if not (fwd or back):
            return (f"pair {k} is not two consecutive sentences: a = {a!r}, b = {b!r}; every pair is "
                    "(s_j, s_j+1) in order or (s_j+1, s_j) swapped")
    covered = Counter(min(pa, pb) for pa, pb in places)  # the first sentence of the consecutive pair
    repeated = [place for place, c in covered.items() if c > 1]
    if repeated:
        d, j = repeated[0]
        return (f"the consecutive pair ({docs[d][j]!r}, {docs[d][j + 1]!r}) appears {covered[repeated[0]]} "
                "times: output each consecutive pair exactly once, in order OR swapped")
    labels = [label for _, _, label in pairs]
    n1 = sum(labels)
    if 0 < n1 < n and all(back == (lab == 0) for back, lab in zip(swapped, labels, strict=True)):
        return "labels flipped: label 0 means in order (a, b), label 1 means swapped (b, a)"
    if n1 == 0 and any(swapped):
        return ("swapping without changing the label: every pair has label 0, but some are swapped; a "
                "swapped pair (b, a) gets label 1")
    if n1 > 0 and not any(swapped):
        return ("label 1 without swapping: every pair is in order, but some have label 1; label 1 means "
                "you output (b, a) instead of (a, b)")
    for k, ((a, b, label), back) in enumerate(zip(pairs, swapped, strict=True)):
        if back != (label == 1):
            what = "swapped (b, a) but has label 0" if back else "in order (a, b) but has label 1"
            return f"pair {k} is {what}: label 0 = in order, 1 = swapped (a = {a!r}, b = {b!r})"
    if n1 == 0:
        return "never swapped: every pair is in order (label 0); about half must be swapped to (b, a) with label 1"
    if n1 == n:
        return "always swapped: every pair has label 1; about half must stay in order (a, b) with label 0"
    if not 0.35 <= n1 / n <= 0.65:
        return f"{n1 / n:.0%} of your pairs are swapped (label 1); expected about 50 %"
    return None


@_register
def check_sop_pairs(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(documents: list[list[str]], seed: int) -> list[(a, b, label)]``: SOP pairs (ALBERT).

    Every consecutive pair ``(a, b)`` of a document becomes ``(a, b, 0)`` (in order) or
    ``(b, a, 1)`` (swapped), about half each (exactly half, or independent coins: both pass);
    both sentences always come from the same document; the same seed gives the same pairs.
    Checked on 421 pairs for two seeds; the reference is :func:`mlstep.sop_pairs`.

    Returns:
        True if every case passes (a ✅/❌ line is printed either way).
    """
    docs = _sop_documents()
    n_pairs = len(sop_pairs(docs, seed=0))  # the reference: one pair per consecutive pair
    return _check_pair_builder(fn, docs, (11, 2025), "0 (in order) or 1 (swapped)", "swapped",
                               lambda pairs: _sop_problem(pairs, docs, n_pairs))


def _check_pair_builder(fn: Callable[..., Any], docs: list[list[str]], seeds: tuple[int, int], meaning: str,
                        mutation: str, problem_of: Callable[[list], str | None]) -> tuple[bool, str]:
    """Run a learner's pair builder twice per seed: it must not change ``docs``, must return valid
    pairs (``problem_of`` says what is wrong), the same for the same seed and different for another."""
    n = len(seeds)
    # No RNG reset between the calls: an answer drawing from the global RNG must differ between them.
    outputs = []
    for i, seed in enumerate(seeds, start=1):
        where = f"(case {i}/{n}: {len(docs)} documents, seed {seed})"
        runs = []
        for _ in range(2):  # the same seed twice: equal answers
            given = copy.deepcopy(docs)
            result, err = _call(fn, given, seed)
            if err:
                return False, f"{err} {where}"
            if given != docs:
                return False, f"your function changed `documents` in place (e.g. {mutation} or popped); copy first {where}"
            pairs = _as_pairs(result, meaning)
            if isinstance(pairs, str):
                return False, f"{pairs} {where}"
            runs.append(pairs)
        problem = problem_of(runs[0])
        if problem:
            return False, f"{problem} {where}"
        if runs[0] != runs[1]:
            return False, (f"not reproducible: two calls with the same seed gave different pairs; draw "
                           f"everything from rng = random.Random(seed) {where}")
        outputs.append(runs[0])
    if outputs[0] == outputs[1]:
        return False, f"the seed is ignored: seeds {seeds[0]} and {seeds[1]} gave the same pairs; use random.Random(seed)"
    return True, _passed(n)
