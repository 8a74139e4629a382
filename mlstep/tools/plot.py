"""Plots used across chapters (matplotlib only): attention heatmaps, per-head grids, curves,
confusion matrices, the encoder block diagram, bars and curves with error bars."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["attention_heatmap", "attention_heads", "line_plot", "plot_confusion_matrix", "encoder_block_diagram",
           "error_bars", "spread_curves"]


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


def plot_confusion_matrix(
    cm,
    labels: Sequence[str] | None = None,
    ax: plt.Axes | None = None,
    normalize: bool = False,
    title: str | None = None,
) -> plt.Axes:
    """Heatmap of a confusion matrix with each cell annotated (rows = true, columns = predicted).

    Args:
        cm: ``(C, C)`` counts, e.g. from :func:`mlstep.metrics.confusion_matrix`.
        labels: ``C`` class names for the axes (default: the class ids).
        ax: axes to draw into (a new figure if None).
        normalize: divide each row by its total, so cell ``(i, j)`` is the fraction of class
            ``i`` predicted as ``j`` (the diagonal is per-class recall); rows with no examples
            stay 0.
        title: optional title.

    Returns:
        The matplotlib ``Axes``.
    """
    m = _as_numpy(cm)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"cm must be a square (C, C) matrix, got shape {m.shape}")
    n = m.shape[0]
    if labels is None:
        labels = [str(i) for i in range(n)]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for a {n}x{n} confusion matrix")
    if normalize:
        totals = m.sum(axis=1, keepdims=True)
        m = np.divide(m, totals, out=np.zeros_like(m), where=totals != 0)  # (C, C): rows sum to 1
    if ax is None:
        _, ax = plt.subplots(figsize=(1.5 + 0.6 * n, 1.2 + 0.55 * n))
    vmax = max(float(m.max()), 1e-9)
    ax.imshow(m, cmap="Blues", vmin=0.0, vmax=vmax)
    ax.set_xticks(range(n), [str(s) for s in labels], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(s) for s in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            text = f"{m[i, j]:.2f}" if normalize else f"{int(round(m[i, j]))}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if m[i, j] > 0.6 * vmax else "black")
    if title:
        ax.set_title(title)
    return ax


def _block_steps(pre_norm: bool) -> list[tuple[str, str]]:
    """The boxes of one encoder block, bottom to top: (label, kind); kind "add" closes a residual."""
    steps = []
    for sublayer in ("multi-head\nself-attention", "feed-forward\n(GELU)"):
        if pre_norm:
            steps += [("LayerNorm", "norm"), (sublayer, "sublayer"), ("+", "add")]
        else:
            steps += [(sublayer, "sublayer"), ("+", "add"), ("LayerNorm", "norm")]
    return steps


def encoder_block_diagram() -> plt.Figure:
    """The transformer encoder block twice, post-LN (BERT) and pre-LN (GPT-2), with residual paths."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 6))
    colours = {"norm": "#fde68a", "sublayer": "#bfdbfe", "add": "white"}
    for ax_, pre_norm in zip(axes, (False, True)):
        ax_.set_xlim(0, 4)
        ax_.set_ylim(-0.6, 8.8)
        ax_.axis("off")
        ax_.set_title("pre-LN (GPT-2, this course's pretraining)" if pre_norm else "post-LN (BERT)", fontsize=10)
        ax_.annotate("x (B, T, D)", (2, -0.5), ha="center", fontsize=9)
        y, branch = 0.0, 0.0  # the height of the residual stream where the current sub-layer branches off
        for label, kind in _block_steps(pre_norm):
            y += 1.2
            width = 0.35 if kind == "add" else 2.2
            ax_.add_patch(plt.Rectangle((2 - width / 2, y - 0.35), width, 0.7, facecolor=colours[kind],
                                        edgecolor="black", lw=1))
            ax_.annotate(label, (2, y), ha="center", va="center", fontsize=9)
            ax_.annotate("", (2, y - 0.35), (2, y - 0.85), arrowprops=dict(arrowstyle="->"))
            if kind == "add":  # the residual connection: from where the branch left, around it, into +
                ax_.plot([2, 3.5, 3.5], [branch + 0.35, branch + 0.35, y], color="gray", lw=1.2)
                ax_.annotate("", (2 + width / 2, y), (3.5, y), arrowprops=dict(arrowstyle="->", color="gray"))
                branch = y
            elif kind == "norm" and not pre_norm:
                branch = y
        ax_.annotate("", (2, y + 1.0), (2, y + 0.35), arrowprops=dict(arrowstyle="->"))
        ax_.annotate("to the next block" + (" (a final LayerNorm after the last)" if pre_norm else ""),
                     (2, y + 1.1), ha="center", fontsize=8)
    fig.tight_layout()
    return fig


def error_bars(
    groups: dict[str, dict[str, tuple[float, float]]],
    ylabel: str,
    title: str | None = None,
    live: dict[str, dict[str, float]] | None = None,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Grouped bars of ``mean ± sd`` over seeds: ``{group: {arm: (mean, sd)}}``, one colour per arm.

    ``live``: values of a run made now, ``{group: {arm: value}}``, drawn as black dots on the bars
    (does a rerun land inside the spread of the committed seeds?).
    """
    arms = list(dict.fromkeys(arm for bars in groups.values() for arm in bars))
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 + 0.9 * len(groups) * max(1, len(arms)) / 2, 3.5))
    width = 0.8 / len(arms)
    for j, arm in enumerate(arms):
        xs = [i + (j - (len(arms) - 1) / 2) * width for i in range(len(groups))]
        means = [bars[arm][0] if arm in bars else np.nan for bars in groups.values()]
        sds = [bars[arm][1] if arm in bars else 0.0 for bars in groups.values()]
        ax.bar(xs, means, width, yerr=sds, capsize=3, label=arm)
        if live:
            ax.plot(xs, [live.get(g, {}).get(arm, np.nan) for g in groups], "k.", markersize=6,
                    label="this run" if j == 0 else None)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return ax


def spread_curves(
    curves: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    live: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Curves of ``mean ± sd`` over seeds, one per label: ``{label: (x, means, sds)}``.

    ``live``: values of a run made now, ``{label: (x, values)}``, drawn as crosses in the colour of
    the curve with the same label (does a rerun land inside the spread of the committed seeds?).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.8))
    for label, (x, means, sds) in curves.items():
        line = ax.errorbar(x, means, yerr=sds, capsize=3, marker="o", label=label)[0]
        if live and label in live:
            ax.plot(*live[label], "x", ms=8, color=line.get_color(), label=f"{label}, this run")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax
