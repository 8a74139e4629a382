"""``python -m mlstep.experiments NAME [options]``: rerun one chapter's sweep and write its
committed result file in ``chapters/results/``.

    python -m mlstep.experiments sentence-tasks     # chapter 05, ≈ 25 CPU-minutes
    python -m mlstep.experiments finetuning         # chapter 06, ≈ 30 CPU-minutes
    python -m mlstep.experiments distillation       # chapter 07, ≈ 10 CPU-minutes
    python -m mlstep.experiments gpt-finetune       # chapter 08, ≈ 11 CPU-minutes (--quick: a smoke run)
    python -m mlstep.experiments multistage         # chapter 09, ≈ 14 CPU-minutes (--seeds, --experiments)
    python -m mlstep.experiments posttrain          # chapter 11, ≈ 45 CPU-minutes (--seeds, --tuning)
    python -m mlstep.experiments modern             # chapter 12, ≈ 32 CPU-minutes (--arms, --quick)

Each sweep takes its own options after its name (``... multistage --help``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

SWEEPS = {"sentence-tasks": "sentence_tasks", "finetuning": "finetuning", "distillation": "distillation",
          "gpt-finetune": "gpt_finetune", "multistage": "multistage", "posttrain": "posttrain_sweep",
          "modern": "modern"}


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SWEEPS:
        sys.exit(f"usage: python -m mlstep.experiments {{{','.join(SWEEPS)}}} [options]\n{__doc__}")
    module = importlib.import_module(f"mlstep.experiments.{SWEEPS[argv[0]]}")
    module.main(argv[1:])


if __name__ == "__main__":
    main()
