"""The PNG bar chart (matplotlib is the optional extra ``xyra[bench]``)."""

from __future__ import annotations

import math
from typing import Any


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw(rows: list[dict[str, Any]], path: str, title: str) -> None:
    """One panel per workload, one bar per peer (median, with a min-max whisker)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from xyra.bench.report import human
    from xyra.bench.workloads import WORKLOADS

    names = [
        n
        for n in dict.fromkeys(r["workload"] for r in rows)
        if any(r["median"] is not None for r in rows if r["workload"] == n)
    ]
    if not names:
        raise ValueError("no results to chart")
    peers = list(dict.fromkeys(r["label"] for r in rows))
    colours = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(peers)}
    cols = min(4, len(names))
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        w = WORKLOADS[name]
        group = [r for r in rows if r["workload"] == name and r["median"] is not None]
        labels = [r["label"] for r in group]
        med = [r["median"] for r in group]
        err = [[r["median"] - r["min"] for r in group], [r["max"] - r["median"] for r in group]]
        ax.bar(
            range(len(group)), med, yerr=err, capsize=3, color=[colours[label] for label in labels]
        )
        ax.set_xticks(range(len(group)))
        ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=7)
        ax.set_title(
            f"{name} ({w.unit}{', lower is better' if not w.higher_is_better else ''})", fontsize=9
        )
        ax.tick_params(axis="y", labelsize=7)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: human(y)))
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80, pil_kwargs={"optimize": True})
    plt.close(fig)
