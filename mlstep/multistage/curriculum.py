"""Curriculum learning: the data a run trains on changes as it goes, from easy to hard.

"Easy" can mean short: BERT pretrains 90 % of its steps on sequences of 128 tokens and only the
last 10 % on 512 (attention costs grow with the square of the length, and only the far position
embeddings need the long sequences). It can mean clean or typical examples first (Bengio et al.,
2009), or a pool that grows from the easiest examples to all of them.

:class:`Curriculum` is a re-iterable of batches for :func:`mlstep.train`: the batches of stage 1
for its number of steps, then stage 2's, and so on; one pass is the whole curriculum, so train
for ``len(curriculum)`` steps. The optimizer and the learning-rate schedule run through all the
stages as one run: compared with random order at the same number of steps, only the order of the
data differs. :func:`growing_pools` makes the stages of an easy-to-hard curriculum.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from mlstep.tasks.labeled import TensorDataset

__all__ = ["Curriculum", "growing_pools"]


def _cycle(data: Iterable) -> Iterator[Any]:
    """``data``'s batches again and again (a DataLoader reshuffles on each pass)."""
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty:
            raise ValueError("a curriculum stage yielded no batches")


class Curriculum:
    """Stages ``[(data, steps), ...]``: ``steps`` batches from each ``data`` in turn, cycling
    through a stage's data as often as its steps need.

    ``data`` is anything :func:`mlstep.train` accepts (a DataLoader, a list of batches). Resuming
    from a checkpoint replays the curriculum from its start and skips the batches already used, so
    it lands at the right stage; the order inside a stage is exact only for data whose order does
    not depend on a generator of its own (a list, or a DataLoader without shuffling).
    """

    def __init__(self, stages: Sequence[tuple[Iterable, int]]):
        if not stages or any(not isinstance(steps, int) or steps <= 0 for _, steps in stages):
            raise ValueError(f"stages must be a non-empty list of (data, steps > 0), got steps "
                             f"{[s for _, s in stages]}")
        self.stages = list(stages)

    def __len__(self) -> int:
        return sum(steps for _, steps in self.stages)

    def __iter__(self) -> Iterator[Any]:
        for data, steps in self.stages:
            yield from itertools.islice(_cycle(data), steps)

    def boundaries(self) -> list[int]:
        """The step at which each stage after the first begins (for plots)."""
        return list(itertools.accumulate(steps for _, steps in self.stages[:-1]))


def growing_pools(data: TensorDataset, difficulty: Sequence[float] | torch.Tensor,
                  fractions: Sequence[float] = (1 / 3, 2 / 3, 1.0)) -> list[TensorDataset]:
    """The easiest ``fractions[k]`` of ``data`` for each stage ``k`` (the last should be 1.0).

    ``difficulty``: one score per row, lower = easier (e.g. the length, or a weaker model's loss).
    Ties keep the data's order.
    """
    difficulty = torch.as_tensor(difficulty, dtype=torch.float64)
    if difficulty.shape != (len(data),):
        raise ValueError(f"need one difficulty per row ({len(data)}), got shape {tuple(difficulty.shape)}")
    if not fractions or any(not 0 < f <= 1 for f in fractions) or list(fractions) != sorted(fractions):
        raise ValueError(f"fractions must increase within (0, 1], got {list(fractions)}")
    order = torch.sort(difficulty, stable=True).indices  # easiest first
    pools = []
    for f in fractions:
        rows = order[: max(1, round(f * len(data)))]
        pools.append(TensorDataset({k: v[rows] for k, v in data.tensors.items()}))
    return pools
