"""The fixed scoring rules (shared/ARCHITECTURE.md, "Scoring"), ROS-free; the demo and bag-eval
both use this one implementation, with despite_core's window label rule.

- A window's true label: the majority label of its frames, ``ambiguous`` when the majority covers
  less than half of them (despite_core.data.windows.window_label).
- A track's true person: the one holding the majority of the track's points over the window
  (ground-truth per-point ids), else the window is ``unassociated``.
- A wearer <-> track assignment is correct when the wearer's person is the track's true person.
- Segments (temporal fusion): a true segment is a person's run of one label; a predicted segment
  (a track's fused segment, from its events) belongs to the true person of most of its windows.
  They match when label and person agree and they overlap by at least half of the shorter one,
  one to one (largest overlaps first). Delay: from a matched true segment's start to the newest
  scan of the window whose event started the predicted one.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from despite_core.data.windows import window_label


from despite_core.runtime.buffers import NS

STAMP_TOLERANCE_NS = 1_000_000          # a label message belongs to the scan within 1 ms of it


class LabelError(ValueError):
    """A label file that cannot be used; the message names the row and the problem."""


def person_of(name: str) -> int:
    """The person id in a wearer or person name (``person_3`` -> 3, a bare ``3`` -> 3); 0 for ""
    and -1 for a name without a trailing number (it matches no true person)."""
    if not name:
        return 0
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else -1


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
    records: list[dict] = field(default_factory=list)   # every window passed to score_window
    truth: list[int] = field(default_factory=list)
    predicted: list[int] = field(default_factory=list)
    raw: list[int] = field(default_factory=list)         # the windows' own labels (-1 unknown)
    ambiguous: int = 0
    unassociated: int = 0
    match_total: dict = field(default_factory=dict)
    match_correct: dict = field(default_factory=dict)

    def add_window(self, person: int, frame_labels, predicted: int, raw: int | None = None) -> str:
        """Score one predicted window: ``person`` its true person (0 = unassociated), ``frame_labels``
        that person's labels at the window's frames (-1 unlabelled), ``predicted`` the reported
        (fused) label, ``raw`` the window's own (None: the same). Returns what was counted."""
        if person == 0:
            self.unassociated += 1
            return "unassociated"
        truth = window_label(np.asarray(frame_labels))
        if truth < 0:
            self.ambiguous += 1
            return "ambiguous"
        self.truth.append(truth)
        self.predicted.append(int(predicted))
        self.raw.append(int(predicted if raw is None else raw))
        return "correct" if truth == predicted else "wrong"

    def score_window(self, stamp: int, track: int, person: int, frame_labels, predicted: int,
                     confidence: float, raw: int | None = None) -> dict:
        """:meth:`add_window`, and a record of the window (for windows.csv and the timeline): its
        newest stamp, track, true person, majority frame label (-1 none), prediction (fused), the
        window's own label and outcome."""
        outcome = self.add_window(person, frame_labels, predicted, raw)
        labels = np.asarray(frame_labels, np.int64)
        true = -1
        if labels.size:
            values, counts = np.unique(labels, return_counts=True)
            true = int(values[np.argmax(counts)])
        record = {"stamp": int(stamp), "track": int(track), "person": int(person), "true": true,
                  "predicted": int(predicted), "raw": int(predicted if raw is None else raw),
                  "confidence": float(confidence), "outcome": outcome}
        self.records.append(record)
        return record

    def add_match(self, wearer: str, wearer_person: int, track_person_id: int) -> None:
        self.match_total[wearer] = self.match_total.get(wearer, 0) + 1
        self.match_correct[wearer] = self.match_correct.get(wearer, 0) + int(wearer_person == track_person_id != 0)

    @property
    def windows(self) -> int:
        return len(self.truth)

    @property
    def accuracy(self) -> float:
        return float(np.mean(np.array(self.truth) == np.array(self.predicted))) if self.truth else float("nan")

    @property
    def accuracy_raw(self) -> float | None:
        """Accuracy of the windows' own labels (without fusion); None when some are unknown."""
        if not self.truth or min(self.raw) < 0:
            return None
        return float(np.mean(np.array(self.truth) == np.array(self.raw)))

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
            "accuracy_raw": self.accuracy_raw,
            "windows": self.windows, "ambiguous": self.ambiguous, "unassociated": self.unassociated,
            "per_class": m["per_class_recall"] if m else {}, "confusion": m["confusion"] if m else [],
            "matching_accuracy": {
                "overall": sum(self.match_correct.values()) / total if total else None,
                **{w: self.match_correct[w] / n for w, n in sorted(self.match_total.items())}},
        }


@dataclass
class GroundTruth:
    """Per-person labels by stamp (from the bag's topic) or labelled time segments (sidecar)."""

    class_names: list[str]
    by_stamp: dict[int, dict[int, int]] = field(default_factory=dict)     # person -> stamp -> class
    segments: list[tuple[int, int, int, int | None]] = field(default_factory=list)   # start, end, class, person

    def add_message(self, msg) -> None:
        s = int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec)
        for p in msg.people:
            cid = int(p.class_id)
            self.by_stamp.setdefault(int(p.track_id), {})[s] = cid if cid < len(self.class_names) else -1

    def people_at(self, stamp: int) -> list[int]:
        """The people the label messages list at ``stamp`` (within the stamp tolerance)."""
        out = []
        for pid, d in self.by_stamp.items():
            keys = self._keys(pid)
            j = int(np.searchsorted(keys, stamp))
            near = [k for k in keys[max(j - 1, 0):j + 1] if abs(int(k) - stamp) <= STAMP_TOLERANCE_NS]
            if near:
                out.append(pid)
        return sorted(out)

    def _keys(self, pid: int) -> np.ndarray:
        return self._table(pid)[0]

    def _table(self, pid: int) -> tuple[np.ndarray, np.ndarray]:
        """(sorted stamps, labels) of a person, cached until new messages arrive."""
        cache = self.__dict__.setdefault("_cache", {})
        d = self.by_stamp[pid]
        if pid not in cache or len(cache[pid][0]) != len(d):
            keys = np.array(sorted(d), np.int64)
            cache[pid] = (keys, np.array([d[int(k)] for k in keys], np.int64))
        return cache[pid]

    def labels(self, person: int, stamps: np.ndarray) -> list[int]:
        if self.segments:
            out = []
            for s in stamps:
                hit = [c for a, b, c, who in self.segments if a <= s < b and who in (None, person)]
                out.append(hit[0] if hit else -1)
            return out
        d = self.by_stamp.get(person, {})
        if not d:
            return [-1] * len(stamps)
        keys, vals = self._table(person)
        q = np.asarray(stamps, np.int64)
        i = np.clip(np.searchsorted(keys, q), 1, len(keys) - 1) if len(keys) > 1 else np.zeros(len(q), np.int64)
        i = np.where(np.abs(keys[i - 1] - q) < np.abs(keys[i] - q), i - 1, i) if len(keys) > 1 else i
        # The label message of a scan and the scan itself may disagree by a rounding nanosecond.
        return [int(vals[j]) if abs(int(keys[j]) - int(t)) <= STAMP_TOLERANCE_NS else -1 for j, t in zip(i, q)]

    @classmethod
    def from_sidecar(cls, path: Path, class_names: list[str]) -> "GroundTruth":
        """The labelled segments of a label file: CSV with a header, or a JSON list of objects, each
        row ``start``, ``end`` (message stamps, seconds since the epoch), ``label`` (a class of the
        model) and optionally ``person`` (an id or ``person_<id>``; none: whoever is there).
        Anything else is a :class:`LabelError` naming the file (and the 1-based row): a file over
        :data:`SIDECAR_MAX_BYTES`, not UTF-8 (a UTF-8 BOM is fine), not CSV / JSON, rows that are not
        objects, times that are not finite seconds in ``0..SIDECAR_MAX_S``, and a file with no
        labelled segment at all (callers would otherwise fall back to the bag's label topic)."""
        path = Path(path)
        gt = cls(list(class_names))
        for i, r in enumerate(_sidecar_rows(path)):
            where = f"{path}: row {i + 1}"
            if not isinstance(r, dict):
                raise LabelError(f"{where}: expected an object with start, end (seconds) and label; got {_short(r)}")
            if r.get("start") is None or r.get("end") is None or r.get("label") is None:
                raise LabelError(f"{where} needs start, end (seconds) and label; got {_short(r)}")
            start, end = _seconds(where, "start", r["start"]), _seconds(where, "end", r["end"])
            if not isinstance(r["label"], str):
                raise LabelError(f"{where}: label must be a class name (text); got {_short(r['label'])}")
            label = r["label"].strip()
            if label not in class_names:
                raise LabelError(f"{where}: label {_short(label)} is not a class of the model {class_names}")
            if end <= start:
                raise LabelError(f"{where}: end {end} is not after start {start}")
            gt.segments.append((int(round(start * NS)), int(round(end * NS)), class_names.index(label),
                                _sidecar_person(where, r.get("person"))))
        if not gt.segments:
            raise LabelError(f"{path}: the label file holds no labelled segments (empty, or a header only); "
                             "give rows of start, end (seconds) and label")
        return gt


SIDECAR_MAX_BYTES = 50 * 1024 * 1024    # a label file larger than this is refused, unread
# Times are message stamps in seconds since the epoch, kept as int64 nanoseconds like the bag's:
# 0 <= t <= 9.2e9 s (up to the year 2262, where int64 nanoseconds end).
SIDECAR_MAX_S = 9.2e9
_PERSON_DIGITS = re.compile(r"[0-9]{1,9}")
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 2, 60, 60, 6, 6
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


def _short(value) -> str:
    """A bounded repr of a value from a label file, for error messages."""
    return _SHORT.repr(value)


def _sidecar_rows(path: Path) -> list:
    """A label file's rows (dicts for CSV; whatever the JSON list holds), or a LabelError."""
    if not path.is_file():
        raise LabelError(f"{path}: label file not found")
    try:
        size = path.stat().st_size
        if size > SIDECAR_MAX_BYTES:
            raise LabelError(f"{path}: the label file has {size} bytes, more than the {SIDECAR_MAX_BYTES} "
                             "a label file may have")
        data = path.read_bytes()
    except OSError as e:
        raise LabelError(f"{path}: cannot read the label file ({e.strerror or e})") from None
    if len(data) > SIDECAR_MAX_BYTES:
        raise LabelError(f"{path}: the label file has more than the {SIDECAR_MAX_BYTES} bytes a label file may have")
    try:
        text = data.decode("utf-8-sig")         # spreadsheets put a BOM at the start of a UTF-8 CSV
    except UnicodeDecodeError as e:
        raise LabelError(f"{path}: not UTF-8 text (byte {e.start} is {data[e.start:e.start + 1]!r}); "
                         "save the label file as UTF-8") from None
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except RecursionError:
            raise LabelError(f"{path}: not a label file: JSON nested too deeply") from None
        except ValueError as e:                  # JSONDecodeError, or a number of over 4300 digits
            raise LabelError(f"{path}: not valid JSON ({str(e)[:200]})") from None
        if not isinstance(rows, list):
            raise LabelError(f"{path}: expected a JSON list of objects with start, end (seconds) and label; "
                             f"got {_JSON_TYPES.get(type(rows), type(rows).__name__)}")
        return rows
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list = []
    header = False
    try:
        reader.fieldnames                        # reads the header row
        header = True
        rows.extend(reader)
    except csv.Error as e:                       # a field over the csv module's size limit, ...
        at = f"row {len(rows) + 1}" if header else "the header"
        raise LabelError(f"{path}: {at}: not valid CSV ({e})") from None
    return rows


def _seconds(where: str, key: str, value) -> float:
    """A row's time in seconds: a finite number (or its text) within 0..SIDECAR_MAX_S."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise LabelError(f"{where}: {key} must be a number of seconds; got {_short(value)}")
    try:
        t = float(value)
    except OverflowError:                        # an integer beyond the float range
        t = None
    except ValueError:
        raise LabelError(f"{where}: {key} {_short(value)} is not a number of seconds") from None
    if t is not None and not math.isfinite(t):
        raise LabelError(f"{where}: {key} {_short(value)} is not a finite number of seconds")
    if t is None or not 0.0 <= t <= SIDECAR_MAX_S:
        raise LabelError(f"{where}: {key} {_short(value) if t is None else f'{t:g}'} s is outside 0..{SIDECAR_MAX_S:g} s "
                         "(times are message stamps in seconds since the epoch, as in the bag's headers)")
    return t


def _sidecar_person(where: str, value) -> int | None:
    """A row's person: None (whoever is there) when absent or empty, else an id or person_<id>."""
    if not value:
        return None
    who = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(who, str):
        who = who.strip()
        if not who:
            return None
        if _PERSON_DIGITS.fullmatch(who.rsplit("_", 1)[-1]):      # ASCII digits, at most 9
            return person_of(who)
    raise LabelError(f"{where}: person {_short(value)} is not a person id or person_<id>")


DISTANCE_BANDS = ((0.0, 5.0), (5.0, 10.0), (10.0, 15.0), (15.0, float("inf")))


VISIBLE_POINTS = 8                      # returns per frame below which a person is called hidden (perception's min_points)


def truth_window(gt: GroundTruth, result) -> tuple[tuple[int, int], tuple[int, float, bool]] | None:
    """The ground-truth person-window of one result of ground-truth segmentation (track id = person
    id), as ``((newest stamp ns, person), (true label, horizontal distance m, visible))``; None when
    that segmentation would not score it (an ambiguous or unlabelled window). ``visible``: the
    person has at least :data:`VISIBLE_POINTS` returns in at least half of the window's frames
    (occlusion by people and furniture hides some windows from any LiDAR pipeline)."""
    label = window_label(np.asarray(gt.labels(result.track_id, result.stamps)))
    if label < 0:
        return None
    counts = [int((c or {}).get(result.track_id, 0)) for c in result.extras]
    visible = 2 * sum(n >= VISIBLE_POINTS for n in counts) >= len(counts)
    return (int(result.stamps[-1]), int(result.track_id)), (int(label), float(np.hypot(*result.centroid[:2])), visible)


def live_vs_truth(truth: dict[tuple[int, int], tuple], live: list[dict], seconds: float) -> dict:
    """How much of the ground truth the live pipeline saw (the fixed rules, shared/ARCHITECTURE.md).

    ``truth``: the ground-truth person-windows, (newest stamp, person) -> (true label, distance m[,
    visible]); windows not flagged visible are also reported apart (``coverage_visible``);
    ``live``: the live pipeline's window records (:attr:`Scoreboard.records`), on the same frame grid
    and stride; ``seconds``: the recording's length.
    - coverage: fraction of the truth windows for which a live window ends at the same stamp on a
      track whose true person is that person; recall: fraction of them that window labels right.
    - false tracks: tracks whose windows mostly belong to no person (background); per minute.
    - id switches: a person's live windows, in time, changing track id; per person per minute.
    Also per person and per distance band."""
    by_key: dict[tuple[int, int], list[dict]] = {}
    for r in live:
        if r["person"] > 0:
            by_key.setdefault((r["stamp"], r["person"]), []).append(r)
    bands = {f"{lo:g}-{hi:g} m": [0, 0, 0] for lo, hi in DISTANCE_BANDS}
    people: dict[int, list[int]] = {}
    seen = [0, 0, 0]                                      # visible truth windows: total, covered, correct
    for (stamp, person), (label, dist, *vis) in truth.items():
        rs = by_key.get((stamp, person), [])
        hit, ok = bool(rs), any(r["predicted"] == label for r in rs)
        if not vis or vis[0]:
            seen[0] += 1
            seen[1] += hit
            seen[2] += ok
        for (lo, hi), key in zip(DISTANCE_BANDS, bands):
            if lo <= dist < hi:
                bands[key][0] += 1
                bands[key][1] += hit
                bands[key][2] += ok
        people.setdefault(person, [0, 0, 0])
        people[person][0] += 1
        people[person][1] += hit
        people[person][2] += ok
    n = len(truth)
    covered = sum(v[1] for v in people.values())
    correct = sum(v[2] for v in people.values())
    # false tracks: most of a track's windows associated with no person
    per_track: dict[int, list[int]] = {}
    for r in live:
        per_track.setdefault(r["track"], [0, 0])
        per_track[r["track"]][0] += 1
        per_track[r["track"]][1] += r["person"] == 0
    false_tracks = sum(1 for total, bg in per_track.values() if 2 * bg >= total)
    # id switches: per person, the track of each stamp (keeping the previous one where it is among them)
    switches = 0
    stamps_of: dict[int, dict[int, set[int]]] = {}
    for r in live:
        if r["person"] > 0:
            stamps_of.setdefault(r["person"], {}).setdefault(r["stamp"], set()).add(r["track"])
    for person, by_stamp in stamps_of.items():
        prev = None
        for stamp in sorted(by_stamp):
            tracks = by_stamp[stamp]
            cur = prev if prev in tracks else min(tracks)
            switches += prev is not None and cur != prev
            prev = cur
    minutes = seconds / 60.0
    persons = len(people) or len(stamps_of)
    rate = lambda x, per: round(x / per, 4) if per > 0 else None  # noqa: E731
    frac = lambda a, b: round(a / b, 4) if b else None  # noqa: E731
    return {
        "truth_windows": n, "coverage": frac(covered, n), "recall": frac(correct, n),
        "visible_truth_windows": seen[0], "coverage_visible": frac(seen[1], seen[0]),
        "recall_visible": frac(seen[2], seen[0]),
        "false_tracks": false_tracks, "false_tracks_per_minute": rate(false_tracks, minutes),
        "id_switches": switches, "id_switches_per_person_minute": rate(switches, persons * minutes),
        "coverage_per_person": {str(p): frac(v[1], v[0]) for p, v in sorted(people.items())},
        "coverage_per_distance": {k: frac(v[1], v[0]) for k, v in bands.items() if v[0]},
        "recall_per_distance": {k: frac(v[2], v[0]) for k, v in bands.items() if v[0]},
        "minutes": round(minutes, 3),
    }


@dataclass(frozen=True)
class Segment:
    """A labelled time span [start, end) of one person (true) or one track (predicted), int ns."""

    person: int | None               # None: a label-file segment for whoever is there
    label: int
    start: int
    end: int
    track: int = 0                   # predicted segments
    emitted: int = 0                 # predicted: newest scan of the window that started it

    @property
    def length(self) -> int:
        return self.end - self.start


SEGMENT_BREAK_NS = NS                 # a person unlabelled for longer splits a true segment


def true_segments(gt: GroundTruth) -> list[Segment]:
    """The ground truth as segments: a label file's rows, or each person's runs of one label in the
    label messages (a run ends one label period after its last message)."""
    if gt.segments:
        return [Segment(who, c, a, b) for a, b, c, who in gt.segments]
    out = []
    for pid in sorted(gt.by_stamp):
        keys, vals = gt._table(pid)
        if not len(keys):
            continue
        period = int(np.median(np.diff(keys))) if len(keys) > 1 else NS // 10
        start = 0
        for i in range(1, len(keys) + 1):
            if i < len(keys) and vals[i] == vals[start] and keys[i] - keys[i - 1] <= SEGMENT_BREAK_NS:
                continue
            if vals[start] >= 0:
                out.append(Segment(pid, int(vals[start]), int(keys[start]), int(keys[i - 1]) + period))
            start = i
    return out


def predicted_segments(events, records: list[dict]) -> list[Segment]:
    """Fused segments from the pipeline's events (an ended segment each; run the pipeline's flush
    at the end of a recording) with the true person of most of the track's windows in them, from
    the scored window ``records``. ``events``: objects with track_id, class_id, start_ns, end_ns,
    ongoing and stamp_ns (runtime.fusion.ActivityEvent, or the message fields); a segment start
    announced again (``repeat``, an alert) does not change when it was first known."""
    started: dict[tuple[int, int], int] = {}
    for e in events:
        if e.ongoing and not getattr(e, "repeat", False):
            started.setdefault((e.track_id, e.start_ns), e.stamp_ns)
    by_track: dict[int, list[tuple[int, int]]] = {}
    for r in records:
        by_track.setdefault(r["track"], []).append((r["stamp"], r["person"]))
    out = []
    for e in events:
        if e.ongoing:
            continue
        votes: dict[int, int] = {}
        for stamp, person in by_track.get(e.track_id, []):
            if e.start_ns < stamp <= e.end_ns:
                votes[person] = votes.get(person, 0) + 1
        person = max(votes.items(), key=lambda kv: (kv[1], kv[0] != 0))[0] if votes else 0
        out.append(Segment(person, int(e.class_id), int(e.start_ns), int(e.end_ns), int(e.track_id),
                           started.get((e.track_id, e.start_ns), int(e.stamp_ns))))
    return out


def match_segments(true: list[Segment], predicted: list[Segment]) -> list[tuple[int, int]]:
    """One-to-one matches (true index, predicted index): same label, same person (a true segment
    without a person matches any), overlapping by at least half of the shorter; largest overlap first."""
    cands = []
    for i, t in enumerate(true):
        for j, p in enumerate(predicted):
            if p.label != t.label or (t.person is not None and p.person != t.person):
                continue
            overlap = min(t.end, p.end) - max(t.start, p.start)
            if overlap > 0 and 2 * overlap >= min(t.length, p.length):
                cands.append((overlap, i, j))
    used_t, used_p, pairs = set(), set(), []
    for _, i, j in sorted(cands, reverse=True):
        if i not in used_t and j not in used_p:
            used_t.add(i)
            used_p.add(j)
            pairs.append((i, j))
    return sorted(pairs)


def segment_metrics(true: list[Segment], predicted: list[Segment], class_names: list[str]) -> dict:
    """Segment precision, recall, F1 (overall and per class) and the delay from a matched true
    segment's start to its event (median and p90, s)."""
    pairs = match_segments(true, predicted)
    nt, np_, nm = len(true), len(predicted), len(pairs)
    prec = nm / np_ if np_ else None
    rec = nm / nt if nt else None
    f1 = 2 * prec * rec / (prec + rec) if prec and rec else (0.0 if prec is not None and rec is not None else None)
    delays = np.array([(predicted[j].emitted - true[i].start) / NS for i, j in pairs])
    per_class = {}
    for c, name in enumerate(class_names):
        t = sum(s.label == c for s in true)
        p = sum(s.label == c for s in predicted)
        m = sum(true[i].label == c for i, _ in pairs)
        if t or p:
            per_class[name] = round(2 * m / (t + p), 4)
    r = lambda x: None if x is None else round(float(x), 4)  # noqa: E731
    return {"true_segments": nt, "predicted_segments": np_, "matched_segments": nm,
            "segment_precision": r(prec), "segment_recall": r(rec), "segment_f1": r(f1),
            "event_delay_s_median": r(np.median(delays)) if nm else None,
            "event_delay_s_p90": r(np.percentile(delays, 90)) if nm else None,
            "segment_f1_per_class": per_class}


def sequence_instances(true: list[Segment], sequence: list[int]) -> list[list[Segment]]:
    """Each run of one person's consecutive true segments whose labels are ``sequence`` (e.g. a
    fall followed by lying), as its segments in order."""
    by_person: dict[int | None, list[Segment]] = {}
    for s in sorted(true, key=lambda s: s.start):
        by_person.setdefault(s.person, []).append(s)
    n = len(sequence)
    return [segs[i:i + n] for segs in by_person.values() for i in range(len(segs) - n + 1)
            if [s.label for s in segs[i:i + n]] == list(sequence)]


def alert_metrics(true: list[Segment], alerts: list[tuple[int, int]], sequence: list[int], hours: float,
                  slack_ns: int = 3 * NS) -> dict:
    """Alerts (e.g. a fall followed by lying) against the true sequences. A true instance: a
    person's consecutive true segments with the labels ``sequence``; ``alerts``: (person, stamp ns)
    of each raised alert (the newest scan of the window that raised it). An alert is a hit when
    it names an instance's person between the instance's start and ``slack_ns`` after its end
    (one hit per instance); the others are false alarms. Delay: instance start to its first alert."""
    instances = [(segs[0].person, segs[0].start, segs[-1].end) for segs in sequence_instances(true, sequence)]
    hit_delay: dict[int, int] = {}
    false = 0
    for person, stamp in sorted(alerts, key=lambda a: a[1]):
        k = next((k for k, (p, a, b) in enumerate(instances)
                  if (p is None or p == person) and a <= stamp <= b + slack_ns), None)
        if k is None:
            false += 1
        elif k not in hit_delay:
            hit_delay[k] = stamp - instances[k][1]
    d = np.array(list(hit_delay.values())) / NS
    return {"instances": len(instances), "alerts": len(alerts), "alert_recall": round(len(hit_delay) / len(instances), 4)
            if instances else None, "false_alarms": false,
            "false_alarms_per_hour": round(false / hours, 3) if hours > 0 else None, "hours": round(hours, 4),
            "alert_delay_s_median": round(float(np.median(d)), 3) if len(d) else None}


def fusion_metrics(gt: GroundTruth, records: list[dict], events, alert_sequence: tuple[str, ...]) -> dict:
    """What temporal fusion is scored by: segment precision / recall / F1 and event delay against
    the ground truth's segments, and the alerts of ``alert_sequence`` (None when the classes lack
    one of its labels; false alarms per person-hour of scored windows). ``records``: the scored
    windows; ``events``: every event, segments closed."""
    names = gt.class_names
    true = true_segments(gt)
    out = segment_metrics(true, predicted_segments(events, records), names)
    if alert_sequence and all(s in names for s in alert_sequence):
        persons: dict[tuple[int, int], int] = {(r["track"], r["stamp"]): r["person"] for r in records}
        spans: dict[int, list[int]] = {}
        for r in records:
            if r["person"] > 0:
                spans.setdefault(r["person"], []).append(r["stamp"])
        hours = sum(max(v) - min(v) for v in spans.values()) / NS / 3600
        alerts = [(persons.get((e.track_id, e.stamp_ns), 0), e.stamp_ns) for e in events if e.ongoing and e.alert]
        out["alerts"] = {"sequence": list(alert_sequence),
                         **alert_metrics(true, alerts, [names.index(s) for s in alert_sequence], hours)}
    else:
        out["alerts"] = None
    return out
