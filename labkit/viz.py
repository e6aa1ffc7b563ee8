"""Plots that several chapters draw: training curves and annotated heatmaps."""
from __future__ import annotations

from typing import Mapping, Sequence


def plot_curves(curves: Mapping[str, Sequence[float]] | Mapping[str, tuple[Sequence[float], Sequence[float]]],
                xlabel: str = "step", ylabel: str = "loss", title: str = "", logx: bool = False,
                logy: bool = False, ax=None):
    """Plot named curves; a value may be `ys` or `(xs, ys)`. Returns the matplotlib Axes.

    >>> ax = plot_curves({"train": [3.1, 2.4, 2.0], "val": ([0, 2], [3.2, 2.2])})
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    for name, c in curves.items():
        xs, ys = c if isinstance(c, tuple) and len(c) == 2 else (range(len(c)), c)
        ax.plot(list(xs), list(ys), label=name, marker="o" if len(list(ys)) < 20 else None)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def heatmap(matrix, xlabels: Sequence[str] | None = None, ylabels: Sequence[str] | None = None,
            title: str = "", annotate: bool | None = None, cmap: str = "viridis", fmt: str = ".2f",
            ax=None, **imshow_kwargs):
    """Draw a 2-D array as an image with optional tick labels and cell values. Returns the Axes.

    >>> ax = heatmap([[1, 0], [0, 1]], ["a", "b"], ["a", "b"], title="identity")
    """
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.5 * m.shape[1] + 2.5, 0.45 * m.shape[0] + 1.8))
    im = ax.imshow(m, cmap=cmap, aspect="auto", **imshow_kwargs)
    if xlabels is not None:
        ax.set_xticks(range(m.shape[1]), xlabels, rotation=60, ha="right")
    if ylabels is not None:
        ax.set_yticks(range(m.shape[0]), ylabels)
    if annotate if annotate is not None else m.size <= 100:
        mid = (np.nanmax(m) + np.nanmin(m)) / 2
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, format(m[i, j], fmt), ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] < mid else "black")
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax)
    return ax
