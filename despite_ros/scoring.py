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
    """Scored windows and wearer assignments; metrics by despite_core.evaluate.har (one definition)."""

    class_names: list[str]
    truth: list[int] = field(default_factory=list)
    predicted: list[int] = field(default_factory=list)
    ambiguous: int = 0
    unassociated: int = 0
    match_total: dict = field(default_factory=dict)
    match_correct: dict = field(default_factory=dict)

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
        self.truth.append(truth)
        self.predicted.append(int(predicted))
        return "correct" if truth == predicted else "wrong"

    def add_match(self, wearer: str, wearer_person: int, track_person_id: int) -> None:
        self.match_total[wearer] = self.match_total.get(wearer, 0) + 1
        self.match_correct[wearer] = self.match_correct.get(wearer, 0) + int(wearer_person == track_person_id != 0)

    @property
    def windows(self) -> int:
        return len(self.truth)

    @property
    def accuracy(self) -> float:
        return float(np.mean(np.array(self.truth) == np.array(self.predicted))) if self.truth else float("nan")

    def summary(self) -> dict:
        from despite_core.evaluate.har import har_metrics

        c = len(self.class_names)
        truth = np.array(self.truth, np.int64)
        pred = np.array(self.predicted, np.int64)
        outside = (pred < 0) | (pred >= c)                # a text label outside the classes: wrong
        pred = np.where(outside, (truth + 1) % c, pred)
        scores = np.zeros((len(pred), c))
        scores[np.arange(len(pred)), pred] = 1
        m = har_metrics(scores, truth, self.class_names) if self.truth else None
        total = sum(self.match_total.values())
        return {
            "accuracy": m["accuracy"] if m else None, "macro_f1": m["macro_f1"] if m else None,
            "windows": self.windows, "ambiguous": self.ambiguous, "unassociated": self.unassociated,
            "per_class": m["per_class_recall"] if m else {}, "confusion": m["confusion"] if m else [],
            "matching_accuracy": {
                "overall": sum(self.match_correct.values()) / total if total else None,
                **{w: self.match_correct[w] / n for w, n in sorted(self.match_total.items())}},
        }
