"""Writing the offline corpus to JSON Lines and loading one task split as a ``datasets.Dataset``.

The files are a cache: ``load_task`` (re)generates them when they are missing, when the
manifest's config differs from the one asked for, when the generator's output has changed
(a fingerprint of a tiny corpus is kept in the manifest) or when a file's sha256 does not match.

Where the files go (first match wins):
1. the ``data_dir`` argument (the folder that holds ``manifest.json`` and the ``*.jsonl`` files);
2. ``$MLSTEP_DATA/generated`` when the ``MLSTEP_DATA`` environment variable is set;
3. ``data/generated/`` of the source checkout the package was imported from (gitignored);
4. ``~/.cache/mlstep/generated`` (or ``$XDG_CACHE_HOME/mlstep/generated``) otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from mlstep.data.corpus import (
    NLI_LABELS,
    SENTIMENT_LABELS,
    TASK_SPLITS,
    TOPICS,
    CorpusConfig,
    generate_corpus,
)
from mlstep.tools.runtime import atomic_write

__all__ = ["default_data_dir", "realtext_dir", "write_corpus", "load_task", "corpus_fingerprint", "english_sample"]

FORMAT_VERSION = 1  # bump when the file layout (not the generator) changes


def default_data_dir() -> Path:
    """The folder ``load_task`` uses when no ``data_dir`` is given (see the module docstring)."""
    env = os.environ.get("MLSTEP_DATA")
    if env:
        return Path(env).expanduser() / "generated"
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").is_file() and (repo / "data").is_dir():
        return repo / "data" / "generated"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mlstep" / "generated"


def realtext_dir() -> Path:
    """``data/realtext`` of the source checkout: the real-English slices and model it commits."""
    folder = Path(__file__).resolve().parents[2] / "data" / "realtext"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: the real-text slices ship with a source checkout "
                                "of mlstep (git clone), not with the installed package")
    return folder


def _jsonl_bytes(records: list[dict[str, Any]]) -> bytes:
    """Canonical JSON Lines (sorted keys, ASCII), so the bytes and their sha256 are stable."""
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode("ascii")


def _config_dict(config: CorpusConfig) -> dict[str, Any]:
    # through JSON so tuples compare equal to the lists read back from manifest.json
    return json.loads(json.dumps(dataclasses.asdict(config)))


@functools.lru_cache(maxsize=1)
def corpus_fingerprint() -> str:
    """sha256 of a tiny corpus: changes whenever the generator's output changes."""
    tiny = CorpusConfig(seed=0, num_documents=20, num_validation_documents=5,
                        sentiment_sizes=(8, 4, 4, 4), topic_sizes=(10, 5, 5, 5),
                        tagging_sizes=(8, 4, 4, 4), nli_sizes=(9, 3, 3), health_pretrain_sizes=(6, 2),
                        health_sentiment_sizes=(6, 4, 4, 4))
    corpus = generate_corpus(tiny)
    h = hashlib.sha256()
    for key in sorted(corpus):
        h.update(key.encode() + b"\n" + _jsonl_bytes(corpus[key]))
    return h.hexdigest()


def write_corpus(directory: str | os.PathLike | None = None,
                 config: CorpusConfig | None = None) -> Path:
    """Generate the corpus and write one ``{task}_{split}.jsonl`` per split plus ``manifest.json``.

    Each file is written to a temporary name and renamed, and the manifest comes last, so an
    interrupted run leaves a folder that ``load_task`` recognises as stale.

    Args:
        directory: target folder (created if needed); ``default_data_dir()`` when None.
        config: what to generate; ``CorpusConfig()`` when None.

    Returns:
        The path of the written ``manifest.json``.
    """
    cfg = config if config is not None else CorpusConfig()
    out = Path(directory) if directory is not None else default_data_dir()
    out.mkdir(parents=True, exist_ok=True)
    corpus = generate_corpus(cfg)
    files = {}
    for key in sorted(corpus):
        data = _jsonl_bytes(corpus[key])
        atomic_write(out / f"{key}.jsonl", data)
        files[f"{key}.jsonl"] = {"sha256": hashlib.sha256(data).hexdigest(),
                                 "records": len(corpus[key])}
    manifest = {"format_version": FORMAT_VERSION, "fingerprint": corpus_fingerprint(),
                "config": _config_dict(cfg), "files": files}
    path = out / "manifest.json"
    atomic_write(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return path


def _is_current(directory: Path, config: CorpusConfig, filename: str) -> bool:
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        entry = manifest["files"][filename]
        data = (directory / filename).read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (manifest.get("format_version") == FORMAT_VERSION
            and manifest.get("fingerprint") == corpus_fingerprint()
            and manifest.get("config") == _config_dict(config)
            and hashlib.sha256(data).hexdigest() == entry.get("sha256"))


def _features(task: str):
    from datasets import ClassLabel, Features, Sequence, Value

    if task == "pretrain":
        return Features({"doc_id": Value("int64"), "topic": ClassLabel(names=TOPICS),
                         "polarity": ClassLabel(names=SENTIMENT_LABELS),
                         "sentences": Sequence(Value("string"))})
    if task == "health_pretrain":
        return Features({"doc_id": Value("int64"), "polarity": ClassLabel(names=SENTIMENT_LABELS),
                         "sentences": Sequence(Value("string"))})
    if task in ("sentiment", "health_sentiment"):
        return Features({"text": Value("string"), "label": ClassLabel(names=SENTIMENT_LABELS),
                         "unseen": Value("bool")})
    if task == "topic":
        return Features({"text": Value("string"), "label": ClassLabel(names=TOPICS),
                         "unseen": Value("bool")})
    if task == "tagging":
        return Features({"tokens": Sequence(Value("string")), "tags": Sequence(Value("string")),
                         "unseen": Value("bool")})
    return Features({"premise": Value("string"), "hypothesis": Value("string"),
                     "label": ClassLabel(names=NLI_LABELS)})


def load_task(task: str, split: str, data_dir: str | os.PathLike | None = None,
              config: CorpusConfig | None = None):
    """One split of the offline corpus as a ``datasets.Dataset`` (no network, no HF cache).

    Args:
        task: one of ``"pretrain", "sentiment", "topic", "tagging", "nli"``, or the held-out
            domain's ``"health_pretrain", "health_sentiment"``.
        split: one of ``TASK_SPLITS[task]``, e.g. ``"train"``, ``"validation"``, ``"test"``,
            ``"test_unseen"``.
        data_dir: folder of the generated files; ``default_data_dir()`` when None. The corpus is
            (re)written there if it is missing or was made with another config or generator.
        config: the corpus to load; ``CorpusConfig()`` when None.

    Returns:
        A ``datasets.Dataset`` whose columns are the record fields (see data/README.md); labels
        are ``ClassLabel`` features, so ``ds.features["label"].names`` gives their names.
    """
    if task not in TASK_SPLITS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASK_SPLITS)}")
    if split not in TASK_SPLITS[task]:
        raise ValueError(f"task {task!r} has no split {split!r}; it has {list(TASK_SPLITS[task])}")
    cfg = config if config is not None else CorpusConfig()
    directory = Path(data_dir) if data_dir is not None else default_data_dir()
    filename = f"{task}_{split}.jsonl"
    if not _is_current(directory, cfg, filename):
        write_corpus(directory, cfg)
    with open(directory / filename, encoding="ascii") as f:
        records = [json.loads(line) for line in f]
    from datasets import Dataset

    features = _features(task)
    # from_dict keeps the documented column order (the files store keys sorted)
    return Dataset.from_dict({k: [r[k] for r in records] for k in features}, features=features)


def english_sample() -> list[str]:
    """Lines of real English that ship with a source checkout: the docstrings of mlstep 0.2, frozen
    in ``data/english/mlstep_docstrings.txt`` (about 12,400 words; chapter 03 trains WordPiece on them)."""
    path = Path(__file__).resolve().parents[2] / "data" / "english" / "mlstep_docstrings.txt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: it ships with a source checkout of mlstep")
    return path.read_text(encoding="utf-8").splitlines()
