"""``python -m mlstep.data [--out DIR] [--seed N]``: write the offline corpus and print statistics."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

from mlstep.data.corpus import NLI_LABELS, SENTIMENT_LABELS, TOPICS, CorpusConfig
from mlstep.data.store import default_data_dir, write_corpus


def corpus_stats(directory: Path) -> list[str]:
    """One line per written split: records, tokens, words and label counts."""
    manifest = json.loads((directory / "manifest.json").read_text())
    lines = []
    vocab: set[str] = set()
    for filename in sorted(manifest["files"]):
        with open(directory / filename, encoding="ascii") as f:
            records = [json.loads(line) for line in f]
        texts = []
        for r in records:
            texts += r.get("sentences", []) + [r[k] for k in ("text", "premise", "hypothesis") if k in r]
            texts += [" ".join(r["tokens"])] if "tokens" in r else []
        words = [w for t in texts for w in t.split()]
        vocab.update(words)
        first = records[0] if records else {}
        if "label" in first:
            names = NLI_LABELS if filename.startswith("nli") else TOPICS if filename.startswith("topic") else SENTIMENT_LABELS
            counts = Counter(names[r["label"]] for r in records)
            labels = " ".join(f"{n}={counts[n]}" for n in names)
        elif "tags" in first:
            counts = Counter(t[2:] for r in records for t in r["tags"] if t.startswith("B-"))
            labels = " ".join(f"{k}={counts[k]}" for k in sorted(counts))
        elif "topic" in first:
            counts = Counter(r["topic"] for r in records)
            labels = "docs/topic " + " ".join(str(counts[i]) for i in range(len(TOPICS)))
        else:
            labels = ""
        lines.append(f"{filename:32s} {len(records):7d} records {len(words):9d} tokens  {labels}")
    lines.append(f"distinct words in all files: {len(vocab)}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="folder (default: data/generated)")
    parser.add_argument("--seed", type=int, default=CorpusConfig().seed, help="corpus seed")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else default_data_dir()
    manifest = write_corpus(out, replace(CorpusConfig(), seed=args.seed))
    print(f"wrote {manifest.parent}")
    print("\n".join(corpus_stats(manifest.parent)))


if __name__ == "__main__":
    main()
