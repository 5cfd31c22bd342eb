"""Training curves: one PNG of a run's per-epoch records (its log.jsonl), losses on the left axis and
validation scores on the right, so a run directory shows at a glance whether training converged."""
from __future__ import annotations

from pathlib import Path


def plot_curves(records: list[dict], png: str | Path, title: str = "") -> None:
    """Every ``*loss`` key of ``records`` (one dict per epoch, key ``epoch``) against the epoch, and
    every ``val_*`` key that is not a loss on a second axis; nothing is drawn for an empty log."""
    if not records:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for r in records for k in r})
    losses = [k for k in keys if k.endswith("loss")]
    scores = [k for k in keys if k.startswith("val_") and not k.endswith("loss")]
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in losses:
        pts = [(r["epoch"], r[k]) for r in records if k in r]
        ax.plot(*zip(*pts), marker="o", label=k)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    handles, labels = ax.get_legend_handles_labels()
    if scores:
        ax2 = ax.twinx()
        for k in scores:
            pts = [(r["epoch"], r[k]) for r in records if k in r]
            ax2.plot(*zip(*pts), marker="s", linestyle="--", label=k)
        ax2.set_ylabel("validation score")
        ax2.set_ylim(0, 1)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="center right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(str(png), dpi=100)
    plt.close(fig)
