"""Activity-recognition metrics, following the fixed scoring of shared/ARCHITECTURE.md: windows
whose label is ambiguous (-1) are counted, not scored."""
from __future__ import annotations

import numpy as np


def har_metrics(scores: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...] | list[str],
                groups: np.ndarray | None = None) -> dict:
    """Window-level accuracy, macro-F1 (over classes present in the truth), per-class recall and the
    confusion matrix; with ``groups`` (one id per window, e.g. a sequence or a labelled segment),
    also group-level accuracy from window scores summed per group (the MSR-Action3D protocol)."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    c = len(class_names)
    scored = labels >= 0
    pred = scores.argmax(1)
    y, p = labels[scored], pred[scored]
    conf = np.zeros((c, c), dtype=np.int64)
    np.add.at(conf, (y, p), 1)
    present = np.nonzero(conf.sum(1) > 0)[0]
    recall = {class_names[i]: float(conf[i, i] / conf[i].sum()) for i in present}
    f1s = []
    for i in present:
        tp = conf[i, i]
        prec = tp / max(conf[:, i].sum(), 1)
        rec = tp / conf[i].sum()
        f1s.append(0.0 if tp == 0 else 2 * prec * rec / (prec + rec))
    out = {
        "accuracy": float((y == p).mean()) if y.size else float("nan"),
        "macro_f1": float(np.mean(f1s)) if f1s else float("nan"),
        "windows": int(scored.sum()), "ambiguous": int((~scored).sum()),
        "per_class_recall": recall, "confusion": conf.tolist(), "class_names": list(class_names),
    }
    if groups is not None:
        g = np.asarray(groups)[scored]
        correct = []
        for gid in np.unique(g):
            sel = g == gid
            correct.append(int(scores[scored][sel].sum(0).argmax() == np.bincount(y[sel]).argmax()))
        out["group_accuracy"] = float(np.mean(correct)) if correct else float("nan")
        out["groups"] = len(correct)
    return out


def segment_ids(seq: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Group id per window: consecutive windows of one sequence with the same label form a segment
    (the analogue of one MSR-Action3D video in long multi-activity sequences)."""
    change = np.ones(len(seq), dtype=bool)
    change[1:] = (seq[1:] != seq[:-1]) | (labels[1:] != labels[:-1])
    return np.cumsum(change) - 1


def plot_confusion(metrics: dict, png: str, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.asarray(metrics["confusion"], dtype=np.float64)
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    names = metrics["class_names"]
    fig, ax = plt.subplots(figsize=(0.5 * len(names) + 3, 0.5 * len(names) + 2.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            if conf[i, j]:
                ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
