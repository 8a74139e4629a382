"""Plots used across chapters (matplotlib only): attention heatmaps, per-head grids, curves."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["attention_heatmap", "attention_heads", "line_plot"]


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=float)


def attention_heatmap(
    weights,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    ax: plt.Axes | None = None,
    title: str | None = None,
    annotate: bool | None = None,
    colorbar: bool = True,
) -> plt.Axes:
    """Draw one ``(queries, keys)`` weight matrix; rows are queries, columns keys.

    ``annotate`` writes each weight in its cell (default: when the matrix is at most 10×10).
    """
    w = _as_numpy(weights)
    if w.ndim != 2:
        raise ValueError(f"attention_heatmap expects a 2-D (queries, keys) matrix, got shape {w.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(1 + 0.45 * w.shape[1], 1 + 0.4 * w.shape[0]))
    im = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=max(1e-9, float(w.max())), aspect="auto")
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if x_labels is not None:
        ax.set_xticks(range(len(x_labels)), list(x_labels), rotation=60, ha="right")
    if y_labels is not None:
        ax.set_yticks(range(len(y_labels)), list(y_labels))
    if annotate is None:
        annotate = w.shape[0] <= 10 and w.shape[1] <= 10
    if annotate:
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if w[i, j] < 0.6 * w.max() else "black")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def attention_heads(
    weights,
    tokens: Sequence[str] | None = None,
    ncols: int = 4,
    title: str | None = None,
) -> plt.Figure:
    """Grid of heatmaps, one per head, from weights ``(heads, queries, keys)``."""
    w = _as_numpy(weights)
    if w.ndim != 3:
        raise ValueError(f"attention_heads expects (heads, queries, keys), got shape {w.shape}")
    h = w.shape[0]
    ncols = min(ncols, h)
    nrows = -(-h // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= h:
            ax.axis("off")
            continue
        attention_heatmap(w[i], tokens, tokens, ax=ax, title=f"head {i}", annotate=False,
                          colorbar=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def line_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logx: bool = False,
    logy: bool = False,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Several named ``(x, y)`` curves on one axis (loss curves, scaling plots, ...)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for name, (x, y) in series.items():
        ax.plot(list(x), list(y), marker="o", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(series) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    return ax
