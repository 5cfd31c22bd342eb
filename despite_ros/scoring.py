"""The fixed scoring rules (shared/ARCHITECTURE.md, "Scoring"), ROS-free; the demo and bag-eval
both use this one implementation, with despite_core's window label rule.

- A window's true label: the majority label of its frames, ``ambiguous`` when the majority covers
  less than half of them (despite_core.data.windows.window_label).
- A track's true person: the one holding the majority of the track's points over the window
  (ground-truth per-point ids), else the window is ``unassociated``.
- A wearer <-> track assignment is correct when the wearer's person is the track's true person.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from despite_core.data.windows import window_label


def track_person(extras: list) -> int:
    """The true person of a track's window from its frames' {person id: point count}; 0 when no
    person holds more than half of the points (background counts as id 0)."""
    total: dict[int, int] = {}
    for counts in extras:
        for pid, n in (counts or {}).items():
            total[int(pid)] = total.get(int(pid), 0) + int(n)
    if not total:
        return 0
    pid, n = max(total.items(), key=lambda kv: kv[1])
    return pid if pid != 0 and 2 * n > sum(total.values()) else 0


@dataclass
class Scoreboard:
    class_names: list[str]
    windows: int = 0                 # scored windows
    correct: int = 0
    ambiguous: int = 0
    unassociated: int = 0
    confusion: np.ndarray = field(default=None)     # (C, C) true x predicted
    match_total: dict = field(default_factory=dict)
    match_correct: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.confusion is None:
            self.confusion = np.zeros((len(self.class_names), len(self.class_names)), np.int64)

    def add_window(self, person: int, frame_labels, predicted: int) -> str:
        """Score one predicted window: ``person`` its true person (0 = unassociated), ``frame_labels``
        that person's labels at the window's frames (-1 unlabelled). Returns what was counted."""
        if person == 0:
            self.unassociated += 1
            return "unassociated"
        truth = window_label(np.asarray(frame_labels))
        if truth < 0:
            self.ambiguous += 1
            return "ambiguous"
        self.windows += 1
        if 0 <= predicted < len(self.class_names):
            self.confusion[truth, predicted] += 1
        self.correct += int(truth == predicted)
        return "correct" if truth == predicted else "wrong"

    def add_match(self, wearer: str, wearer_person: int, track_person_id: int) -> None:
        self.match_total[wearer] = self.match_total.get(wearer, 0) + 1
        self.match_correct[wearer] = self.match_correct.get(wearer, 0) + int(wearer_person == track_person_id != 0)

    @property
    def accuracy(self) -> float:
        return self.correct / self.windows if self.windows else float("nan")

    def summary(self) -> dict:
        c = self.confusion
        support = c.sum(1)
        pred = c.sum(0)
        tp = np.diag(c)
        present = support > 0
        recall = np.divide(tp, support, out=np.zeros(len(tp)), where=support > 0)
        precision = np.divide(tp, pred, out=np.zeros(len(tp)), where=pred > 0)
        f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(tp)), where=(precision + recall) > 0)
        total = sum(self.match_total.values())
        return {
            "accuracy": self.accuracy if self.windows else None,
            "macro_f1": float(f1[present].mean()) if present.any() else None,
            "windows": self.windows, "ambiguous": self.ambiguous, "unassociated": self.unassociated,
            "per_class": {n: {"support": int(support[i]), "recall": float(recall[i]), "precision": float(precision[i]),
                              "f1": float(f1[i])} for i, n in enumerate(self.class_names) if support[i] or pred[i]},
            "confusion": c.tolist(),
            "matching_accuracy": {
                "overall": sum(self.match_correct.values()) / total if total else None,
                **{w: self.match_correct[w] / n for w, n in sorted(self.match_total.items())}},
        }
