"""Real benchmarks through ``datasets``, with the same column names as the offline corpus.

Every loader returns a ``datasets.DatasetDict`` with normalised columns:

=====================  =====================================  ===================================
loader                 columns                                splits
=====================  =====================================  ===================================
``load_sst2``          ``text, label`` (0 neg, 1 pos)          train, validation
``load_ag_news``       ``text, label`` (4 classes, 0-based)    train, test
``load_imdb``          ``text, label`` (0 neg, 1 pos)          train, test (+ unsupervised, label -1)
``load_mnli``          ``premise, hypothesis, label``          train, validation_matched, validation_mismatched
``load_conll2003``     ``tokens, tags`` (IOB2 strings)         train, validation, test
``load_wikitext2``     ``text`` (one line per row)             train, validation, test
=====================  =====================================  ===================================

Without ``path`` a loader downloads from the Hugging Face Hub (network; cached by ``datasets``
in its usual cache). With ``path`` it reads a local copy in the dataset's usual file format
(described in each docstring) and never touches the network. GLUE test splits, whose labels
are hidden, are left out.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

__all__ = [
    "load_sst2",
    "load_ag_news",
    "load_imdb",
    "load_mnli",
    "load_conll2003",
    "load_wikitext2",
    "AG_NEWS_LABELS",
    "CONLL2003_TAGS",
]

AG_NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]
# The tag order of the Hub's conll2003 ``ner_tags`` feature.
CONLL2003_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
_BINARY = ["negative", "positive"]
_NLI = ["entailment", "neutral", "contradiction"]


# --- helpers -----------------------------------------------------------------------------------

def _find_splits(path: str | os.PathLike, names: dict[str, list[str]], what: str) -> dict[str, Path]:
    """Map split → file for a folder (first existing name per split) or a single file (train)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what}: no such file or folder: {p}")
    if p.is_file():
        return {"train": p}
    found = {}
    for split, candidates in names.items():
        for name in candidates:
            if (p / name).exists():
                found[split] = p / name
                break
    if not found:
        expected = "; ".join(f"{s}: {' or '.join(c)}" for s, c in names.items())
        raise FileNotFoundError(f"{what}: found none of the expected files in {p} ({expected})")
    return found


def _dataset_dict(splits: dict[str, dict[str, list]], features):
    from datasets import Dataset, DatasetDict

    return DatasetDict({s: Dataset.from_dict(cols, features=features) for s, cols in splits.items()})


def _text_label_features(names: list[str]):
    from datasets import ClassLabel, Features, Value

    return Features({"text": Value("string"), "label": ClassLabel(names=names)})


def _read_tsv(file: Path) -> tuple[list[str], list[list[str]]]:
    """GLUE-style TSV: a header, then tab-separated fields, no quoting."""
    with open(file, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise ValueError(f"{file} is empty (expected a header line)")
    return rows[0], rows[1:]


def _column(header: list[str], name: str, file: Path) -> int:
    if name not in header:
        raise ValueError(f"{file}: header {header} has no column {name!r}")
    return header.index(name)


def _hub(*args, **kwargs):
    from datasets import load_dataset

    return load_dataset(*args, **kwargs)


# --- loaders -----------------------------------------------------------------------------------

def load_sst2(path: str | os.PathLike | None = None):
    """SST-2 (binary sentiment of movie-review phrases).

    Args:
        path: a GLUE ``SST-2`` folder with ``train.tsv`` and ``dev.tsv`` (header
            ``sentence<TAB>label``, label 0 = negative, 1 = positive), or one such file (loaded
            as ``train``). None: ``stanfordnlp/sst2`` from the Hub.

    Returns:
        ``DatasetDict`` with ``train`` and ``validation``, columns ``text, label``.
    """
    if path is None:
        from datasets import DatasetDict

        ds = _hub("stanfordnlp/sst2")  # its test split has hidden labels (-1): left out
        return DatasetDict({s: ds[s].rename_column("sentence", "text").remove_columns("idx")
                            for s in ("train", "validation")})
    files = _find_splits(path, {"train": ["train.tsv"], "validation": ["dev.tsv", "validation.tsv"]},
                         "SST-2")
    splits = {}
    for split, file in files.items():
        header, rows = _read_tsv(file)
        i_text, i_label = _column(header, "sentence", file), _column(header, "label", file)
        text, label = [], []
        for n, row in enumerate(rows, start=2):
            if len(row) <= max(i_text, i_label) or row[i_label].strip() not in ("0", "1"):
                raise ValueError(f"{file}, line {n}: expected 'sentence<TAB>label' with label 0/1, got {row!r}")
            text.append(row[i_text].strip())
            label.append(int(row[i_label]))
        splits[split] = {"text": text, "label": label}
    return _dataset_dict(splits, _text_label_features(_BINARY))


def load_ag_news(path: str | os.PathLike | None = None):
    """AG News (4-class news topic: World, Sports, Business, Sci/Tech).

    Args:
        path: a folder with ``train.csv`` and ``test.csv`` in the original format (no header;
            quoted fields ``class,title,description``, class 1–4), or one such file.
            None: ``fancyzhx/ag_news`` from the Hub.

    Returns:
        ``DatasetDict`` with ``train`` and ``test``, columns ``text`` (title + " " + description)
        and ``label`` (0–3).
    """
    if path is None:
        return _hub("fancyzhx/ag_news")
    files = _find_splits(path, {"train": ["train.csv"], "test": ["test.csv"]}, "AG News")
    splits = {}
    for split, file in files.items():
        text, label = [], []
        with open(file, encoding="utf-8", newline="") as f:
            for n, row in enumerate(csv.reader(f), start=1):
                if n == 1 and row and not row[0].strip().isdigit():
                    continue  # tolerate a header line ("Class Index,Title,Description")
                if len(row) != 3 or row[0].strip() not in ("1", "2", "3", "4"):
                    raise ValueError(f"{file}, line {n}: expected 'class,title,description' with class 1-4, got {row!r}")
                label.append(int(row[0]) - 1)  # the CSV is 1-based
                text.append(f"{row[1].strip()} {row[2].strip()}".replace("\\n", " ").strip())
        splits[split] = {"text": text, "label": label}
    return _dataset_dict(splits, _text_label_features(AG_NEWS_LABELS))


def load_imdb(path: str | os.PathLike | None = None):
    """IMDb movie reviews (binary sentiment, 25k train / 25k test).

    Args:
        path: the ``aclImdb`` folder (or its parent) with ``{train,test}/{pos,neg}/*.txt``;
            ``train/unsup/*.txt``, when present, becomes an ``unsupervised`` split (label -1).
            None: ``stanfordnlp/imdb`` from the Hub.

    Returns:
        ``DatasetDict`` with ``train``, ``test`` (and ``unsupervised``), columns ``text, label``.
    """
    if path is None:
        return _hub("stanfordnlp/imdb")
    root = Path(path).expanduser()
    if (root / "aclImdb").is_dir():
        root = root / "aclImdb"
    if not root.is_dir():
        raise FileNotFoundError(f"IMDb: no such folder: {root}")
    splits = {}
    for split, sub in (("train", "train"), ("test", "test"), ("unsupervised", "train")):
        folders = [("unsup", -1)] if split == "unsupervised" else [("neg", 0), ("pos", 1)]
        text, label = [], []
        for name, lab in folders:
            for file in sorted((root / sub / name).glob("*.txt")):  # sorted: same order everywhere
                text.append(file.read_text(encoding="utf-8").strip())
                label.append(lab)
        if text:
            splits[split] = {"text": text, "label": label}
    if "train" not in splits and "test" not in splits:
        raise FileNotFoundError(f"IMDb: no {{train,test}}/{{pos,neg}}/*.txt files under {root}")
    from datasets import Features, Value

    # ClassLabel cannot hold the -1 of unlabeled reviews, so a plain int column is used here
    return _dataset_dict(splits, Features({"text": Value("string"), "label": Value("int64")}))


def _read_mnli_jsonl(file: Path) -> list[tuple[str, str, str, int]]:
    """``(premise, hypothesis, gold_label, line)`` of each record of an MNLI JSON Lines file."""
    with open(file, encoding="utf-8") as f:
        rows = []
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                ex = json.loads(line)
                rows.append((ex["sentence1"], ex["sentence2"], ex["gold_label"], n))
            except (ValueError, KeyError) as e:
                raise ValueError(f"{file}, line {n}: expected a JSON object with "
                                 f"sentence1, sentence2, gold_label ({e})") from None
    return rows


def _read_mnli_tsv(file: Path) -> list[tuple[str, str, str, int]]:
    """``(premise, hypothesis, gold_label, line)`` of each row of a GLUE MNLI TSV file."""
    header, body = _read_tsv(file)
    i1, i2 = _column(header, "sentence1", file), _column(header, "sentence2", file)
    il = _column(header, "gold_label", file)
    rows = []
    for n, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise ValueError(f"{file}, line {n}: {len(r)} tab-separated fields, but the "
                             f"header has {len(header)}")
        rows.append((r[i1], r[i2], r[il], n))
    return rows


def _nli_columns(rows: list[tuple[str, str, str, int]], file: Path) -> dict[str, list]:
    """The columns ``premise, hypothesis, label`` of ``rows``, pairs without a gold label dropped."""
    cols: dict[str, list] = {"premise": [], "hypothesis": [], "label": []}
    for premise, hypothesis, gold, n in rows:
        if gold == "-":
            continue  # annotators did not agree
        if gold not in _NLI:
            raise ValueError(f"{file}, line {n}: unknown gold_label {gold!r}; expected one of {_NLI}")
        cols["premise"].append(premise)
        cols["hypothesis"].append(hypothesis)
        cols["label"].append(_NLI.index(gold))
    return cols


def load_mnli(path: str | os.PathLike | None = None):
    """MultiNLI (premise / hypothesis → entailment 0, neutral 1, contradiction 2).

    Args:
        path: a folder with the GLUE ``MNLI`` TSVs (``train.tsv``, ``dev_matched.tsv``,
            ``dev_mismatched.tsv``; columns ``sentence1, sentence2, gold_label``) or the original
            JSON Lines (``multinli_1.0_train.jsonl``, ``multinli_1.0_dev_matched.jsonl``, ...),
            or one such file. Pairs without a gold label (``-``) are dropped.
            None: GLUE ``mnli`` from the Hub.

    Returns:
        ``DatasetDict`` with ``train``, ``validation_matched``, ``validation_mismatched``,
        columns ``premise, hypothesis, label``.
    """
    from datasets import ClassLabel, Features, Value

    if path is None:
        from datasets import DatasetDict

        ds = _hub("nyu-mll/glue", "mnli")  # its test splits have hidden labels: left out
        keep = ["train", "validation_matched", "validation_mismatched"]
        return DatasetDict({s: ds[s].remove_columns("idx") for s in keep})
    files = _find_splits(path, {
        "train": ["train.tsv", "multinli_1.0_train.jsonl", "train.jsonl"],
        "validation_matched": ["dev_matched.tsv", "multinli_1.0_dev_matched.jsonl", "dev_matched.jsonl"],
        "validation_mismatched": ["dev_mismatched.tsv", "multinli_1.0_dev_mismatched.jsonl",
                                  "dev_mismatched.jsonl"],
    }, "MNLI")
    splits = {}
    for split, file in files.items():
        rows = _read_mnli_jsonl(file) if file.suffix == ".jsonl" else _read_mnli_tsv(file)
        splits[split] = _nli_columns(rows, file)
    return _dataset_dict(splits, Features({"premise": Value("string"), "hypothesis": Value("string"),
                                           "label": ClassLabel(names=_NLI)}))


def _iob2(tags: list[str]) -> list[str]:
    """IOB1 → IOB2 (an ``I-X`` that starts an entity becomes ``B-X``); IOB2 is left unchanged."""
    out = []
    for i, tag in enumerate(tags):
        if tag.startswith("I-") and (i == 0 or out[-1] == "O" or out[-1][2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
    return out


def _read_conll(file: Path) -> dict[str, list]:
    tokens, tags, words, labels = [], [], [], []
    with open(file, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if not parts or parts[0] == "-DOCSTART-":
                if words:
                    tokens.append(words)
                    tags.append(_iob2(labels))
                    words, labels = [], []
                continue
            tag = parts[-1]
            if len(parts) < 2 or not (tag == "O" or tag[:2] in ("B-", "I-")):
                raise ValueError(f"{file}, line {n}: expected 'word POS chunk NER' with an IOB "
                                 f"tag last, got {line.rstrip()!r}")
            words.append(parts[0])
            labels.append(tag)
    if words:
        tokens.append(words)
        tags.append(_iob2(labels))
    return {"tokens": tokens, "tags": tags}


def load_conll2003(path: str | os.PathLike | None = None):
    """CoNLL-2003 English named entities (PER, LOC, ORG, MISC).

    Args:
        path: a folder with ``train.txt``, ``valid.txt`` (or ``dev.txt``) and ``test.txt``
            (or ``eng.train``, ``eng.testa``, ``eng.testb``) in the shared-task format: one
            ``word POS chunk NER`` line per token, blank lines between sentences, ``-DOCSTART-``
            lines between documents; or one such file. IOB1 tags are converted to IOB2.
            None: ``eriktks/conll2003`` from the Hub (its Parquet export).

    Returns:
        ``DatasetDict`` with ``train``, ``validation``, ``test``, columns ``tokens, tags``
        (tags as strings, e.g. ``"B-PER"``).
    """
    from datasets import Features, Sequence, Value

    features = Features({"tokens": Sequence(Value("string")), "tags": Sequence(Value("string"))})
    if path is None:
        ds = _hub("eriktks/conll2003", revision="refs/convert/parquet")
        feat = ds["train"].features["ner_tags"]
        names = getattr(getattr(feat, "feature", None), "names", None) or CONLL2003_TAGS

        def to_strings(ex):
            return {"tokens": ex["tokens"], "tags": [names[i] for i in ex["ner_tags"]]}

        return ds.map(to_strings, remove_columns=ds["train"].column_names, features=features)
    files = _find_splits(path, {"train": ["train.txt", "eng.train"],
                                "validation": ["valid.txt", "dev.txt", "validation.txt", "eng.testa"],
                                "test": ["test.txt", "eng.testb"]}, "CoNLL-2003")
    return _dataset_dict({s: _read_conll(f) for s, f in files.items()}, features)


def load_wikitext2(path: str | os.PathLike | None = None):
    """WikiText-2 (raw Wikipedia text for language modelling).

    Args:
        path: a folder with ``wiki.train.tokens``, ``wiki.valid.tokens``, ``wiki.test.tokens``
            (or ``wiki.*.raw``, or ``train.txt``, ``valid.txt``, ``test.txt``): one paragraph or
            ``= Heading =`` per line; or one such file. Read with ``load_dataset("text")``.
            None: ``Salesforce/wikitext``, ``wikitext-2-raw-v1`` from the Hub.

    Returns:
        ``DatasetDict`` with ``train``, ``validation``, ``test``, column ``text`` (one line per
        row, empty lines included, as on the Hub).
    """
    if path is None:
        return _hub("Salesforce/wikitext", "wikitext-2-raw-v1")
    files = _find_splits(path, {
        "train": ["wiki.train.tokens", "wiki.train.raw", "train.txt"],
        "validation": ["wiki.valid.tokens", "wiki.valid.raw", "valid.txt", "validation.txt"],
        "test": ["wiki.test.tokens", "wiki.test.raw", "test.txt"],
    }, "WikiText-2")
    return _hub("text", data_files={s: str(f) for s, f in files.items()})
