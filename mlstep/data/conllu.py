"""Universal Dependencies treebanks: CoNLL-U files → sentences of words with part-of-speech tags.

CoNLL-U (universaldependencies.org/format.html) has one word per line, ten tab-separated
columns (``ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC``), ``#`` comment lines before each
sentence (``# sent_id = …``, ``# text = …``, ``# newdoc id = …``) and a blank line after it. Two
kinds of line are not words and are skipped: multiword tokens (ID ``1-2``: "don't" spans the
words "do" and "n't") and empty nodes (ID ``8.1``) of enhanced dependencies.

:func:`load_conllu` reads a treebank folder (``*-ud-train.conllu``, ``*-ud-dev.conllu``,
``*-ud-test.conllu``) into a ``datasets.DatasetDict`` with the columns of the course's tagging
task (``tokens``, ``tags``: the universal part of speech, UPOS), plus ``text``, ``sent_id`` and
``doc_id``. :func:`load_ud_english_ewt` reads the English Web Treebank, by default the slice that
ships with the course in ``data/realtext/`` (see ``data/README.md``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mlstep.tools.checks import check_type

__all__ = ["UPOS_TAGS", "read_conllu", "parse_conllu", "load_conllu", "load_ud_english_ewt"]

# The 17 universal part-of-speech tags of UD v2, alphabetical (the id order of the course's heads).
UPOS_TAGS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
             "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")
_SPLITS = {"train": "train", "validation": "dev", "test": "test"}  # split name → file-name part


def read_conllu(file: str | os.PathLike) -> dict[str, list]:
    """The sentences of one CoNLL-U file as columns ``sent_id, doc_id, text, tokens, tags``."""
    check_type("file", file, (str, os.PathLike), "a str or os.PathLike: a .conllu file")
    with open(file, encoding="utf-8") as f:
        return parse_conllu(f, source=str(file))


def parse_conllu(lines: Iterable[str], source: str = "<conllu>") -> dict[str, list]:
    """CoNLL-U lines → columns ``sent_id, doc_id, text, tokens, tags`` (one entry per sentence).

    ``doc_id`` is the latest ``# newdoc id`` (empty before the first one); ``text`` is the
    ``# text`` comment, or the words joined by spaces when there is none. Raises ``ValueError``
    naming ``source`` and the line for a word line without ten columns or an unknown UPOS tag.
    """
    if isinstance(lines, str) or not isinstance(lines, Iterable):
        raise TypeError(f"lines must be an iterable of lines (an open file, text.splitlines()), got "
                        f"{'a single str' if isinstance(lines, str) else type(lines).__name__}")
    columns: dict[str, list] = {"sent_id": [], "doc_id": [], "text": [], "tokens": [], "tags": []}
    comments: dict[str, str] = {}
    words: list[str] = []
    tags: list[str] = []
    doc_id = ""

    def end_sentence() -> None:
        if words:
            columns["sent_id"].append(comments.get("sent_id", f"{source}:{len(columns['sent_id']) + 1}"))
            columns["doc_id"].append(doc_id)
            columns["text"].append(comments.get("text", " ".join(words)))
            columns["tokens"].append(list(words))
            columns["tags"].append(list(tags))
        comments.clear()
        words.clear()
        tags.clear()

    for n, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            end_sentence()
        elif line.startswith("#"):
            key, sep, value = line[1:].partition("=")
            if sep:
                comments[key.strip()] = value.strip()
                if key.strip() in ("newdoc id", "newdoc"):
                    doc_id = value.strip()
        else:
            cols = line.split("\t")
            if len(cols) != 10:
                raise ValueError(f"{source}, line {n}: expected 10 tab-separated columns "
                                 f"(ID FORM LEMMA UPOS ...), got {len(cols)}: {line!r}")
            if "-" in cols[0] or "." in cols[0]:
                continue  # a multiword token ("1-2") or an empty node ("8.1"): not a word
            if cols[3] not in UPOS_TAGS:
                raise ValueError(f"{source}, line {n}: unknown UPOS tag {cols[3]!r}; known: {list(UPOS_TAGS)}")
            words.append(cols[1])
            tags.append(cols[3])
    end_sentence()  # a file need not end with a blank line
    return columns


def load_conllu(path: str | os.PathLike):
    """A UD treebank as a ``DatasetDict`` (splits train, validation, test: those present).

    Args:
        path: a treebank folder with ``*-ud-train.conllu``, ``*-ud-dev.conllu``,
            ``*-ud-test.conllu`` (UD's file names), or one ``.conllu`` file (loaded as ``train``).

    Returns:
        Columns ``sent_id, doc_id, text, tokens, tags`` (UPOS strings, see :data:`UPOS_TAGS`).
    """
    from datasets import Dataset, DatasetDict, Features, Sequence, Value

    check_type("path", path, (str, os.PathLike), "a str or os.PathLike (a folder or a .conllu file)")
    p = Path(path).expanduser()
    if p.is_file():
        files = {"train": p}
    elif p.is_dir():
        files = {}
        for split, part in _SPLITS.items():
            found = sorted(p.glob(f"*-ud-{part}.conllu"))
            if len(found) > 1:
                raise ValueError(f"{p} holds several {part} files: {[f.name for f in found]}")
            if found:
                files[split] = found[0]
        if not files:
            raise FileNotFoundError(f"no *-ud-train.conllu, *-ud-dev.conllu or *-ud-test.conllu in {p}")
    else:
        raise FileNotFoundError(f"UD treebank: no such file or folder: {p}")
    features = Features({"sent_id": Value("string"), "doc_id": Value("string"), "text": Value("string"),
                         "tokens": Sequence(Value("string")), "tags": Sequence(Value("string"))})
    return DatasetDict({s: Dataset.from_dict(read_conllu(f), features=features) for s, f in files.items()})


def load_ud_english_ewt(path: str | os.PathLike | None = None):
    """UD English Web Treebank (blogs, newsgroups, emails, reviews, answers; CC BY-SA 4.0).

    Args:
        path: a copy of the treebank (the ``UD_English-EWT`` folder of universaldependencies.org
            with ``en_ewt-ud-{train,dev,test}.conllu``). None: the course's slice in
            ``data/realtext/ud_english_ewt`` (1,000 training sentences and the whole test split).
    """
    if path is None:
        from mlstep.data.store import realtext_dir

        path = realtext_dir() / "ud_english_ewt"
    return load_conllu(path)
