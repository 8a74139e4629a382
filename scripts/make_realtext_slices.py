"""Cut the real-English slices that chapter 10 runs on (data/realtext/) from full copies.

    python scripts/make_realtext_slices.py --data DIR

``DIR`` holds ``wikitext2/{train,valid}.txt`` (WikiText-2 v1, one paragraph per line) and
``ud_english_ewt/en_ewt-ud-{train,test}.conllu`` plus its ``LICENSE.txt`` (UD English EWT).
Lines are copied unchanged:

- WikiText-2: the first lines of ``train.txt`` up to about 1 MB, of ``valid.txt`` up to about
  300 kB (whole lines; the licence is CC BY-SA 3.0).
- UD English EWT: the whole test file; from the training file, the first 1,000 sentences of the
  seed-0 order of :func:`mlstep.tasks.realtext.sample_order` (the order the label budgets draw in), in
  that order, without their ``# newdoc`` / ``# newpar`` comments (they no longer start anything);
  the licence file (CC BY-SA 4.0).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from mlstep.tasks.realtext import UD_SLICE_SENTENCES, sample_order

ROOT = Path(__file__).resolve().parents[1]


def head_lines(src: Path, dst: Path, max_bytes: int) -> int:
    """Copy whole lines of ``src`` while the copy stays under ``max_bytes``; returns the line count."""
    lines, size = [], 0
    for line in src.read_text(encoding="utf-8").splitlines(keepends=True):
        size += len(line.encode("utf-8"))
        if size > max_bytes:
            break
        lines.append(line)
    dst.write_text("".join(lines), encoding="utf-8")
    return len(lines)


def conllu_blocks(text: str) -> list[str]:
    """The sentence blocks of a CoNLL-U file (comments and word lines, without the blank line)."""
    return [b for b in text.split("\n\n") if b.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="folder with wikitext2/ and ud_english_ewt/")
    parser.add_argument("--out", default=str(ROOT / "data" / "realtext"))
    args = parser.parse_args()
    data, out = Path(args.data), Path(args.out)
    (out / "wikitext2").mkdir(parents=True, exist_ok=True)
    (out / "ud_english_ewt").mkdir(parents=True, exist_ok=True)

    for name, limit in (("train.txt", 1_000_000), ("valid.txt", 300_000)):
        n = head_lines(data / "wikitext2" / name, out / "wikitext2" / name, limit)
        print(f"wikitext2/{name}: {n:,} lines")

    ud = data / "ud_english_ewt"
    shutil.copyfile(ud / "en_ewt-ud-test.conllu", out / "ud_english_ewt" / "en_ewt-ud-test.conllu")
    shutil.copyfile(ud / "LICENSE.txt", out / "ud_english_ewt" / "LICENSE.txt")
    blocks = conllu_blocks((ud / "en_ewt-ud-train.conllu").read_text(encoding="utf-8"))
    picked = [blocks[i] for i in sample_order(len(blocks), seed=0)[:UD_SLICE_SENTENCES]]
    picked = ["\n".join(ln for ln in b.splitlines() if not ln.startswith(("# newdoc", "# newpar"))) for b in picked]
    (out / "ud_english_ewt" / "en_ewt-ud-train.conllu").write_text("\n\n".join(picked) + "\n\n", encoding="utf-8")
    print(f"ud_english_ewt: {len(picked):,} of {len(blocks):,} training sentences, the whole test split")


if __name__ == "__main__":
    main()
