"""The live pipeline's logic, ROS-free: what har_node, matching_node, the demo and bag-eval run.

- :class:`HarPipeline`: scan -> perception -> frame selection -> per-track windows -> every
  ``stride`` selected scans, all ready tracks through the streaming encoder in one batch ->
  labels (trained head, or the bundle's text queries) and embeddings; each track's window scores
  fused over time (runtime.fusion) into a stable label and segment events.
- :class:`WearerMatcher`: IMU windows of the declared wearers at a batch of track embeddings'
  scan stamps -> IMU embeddings -> cosine similarity, softmax probabilities at the bundle's
  temperature, Hungarian assignment with a minimum-similarity gate; IMU-only labels.
Scoring lives in despite_core.runtime.scoring.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from despite_core.data.body_motion import body_motion, cloud_extent
from despite_core.data.sampling import normalise_frame
from despite_core.runtime.buffers import NS, BufferConfig, FrameSelector, TrackBuffers, Window, WearerImu
from despite_core.runtime.inference import Runtime, StreamingPointEncoder, TrackWindow, _softmax
from despite_core.runtime.fusion import NO_CLASS, ActivityEvent, ActivityFusion, Fused, FusionConfig
from despite_core.runtime.perception import Perception, PerceptionConfig, ScanResult

LABEL_SOURCES = ("head", "text")


# frame-selection outcomes whose scan goes no further (buffers.FrameSelector.offer)
DROPPED = ("skipped", "duplicate", "bad_stamp", "held")


@dataclass
class TrackResult:
    """One track's window, inferred: the window's own label and scores, and (with fusion on) the
    label fused over the track's windows so far."""

    track_id: int
    stamps: np.ndarray               # (T,) int64 ns
    centroid: np.ndarray             # (3,) newest frame, sensor frame
    label: str                       # the window's own label (argmax of scores)
    class_id: int                    # index in the bundle's class_names (65535 for a text label outside them)
    confidence: float
    scores: np.ndarray               # (C,) or (labels,) for text queries
    embedding: np.ndarray            # (D,) unit vector
    extras: list = field(default_factory=list)    # per-frame payloads (e.g. ground-truth point counts)
    fused: Fused | None = None       # None with fusion off
    centroids: np.ndarray | None = None   # (T, 3) raw centroids of the window's frames, sensor frame
    extents: np.ndarray | None = None     # (T, 2) raw cloud height and horizontal extent (NaN: not given)

    @property
    def decision(self) -> Fused:
        """What the pipeline reports: the fused label, or the window's own with fusion off."""
        return self.fused or Fused(self.label, self.class_id, self.confidence)


@dataclass
class ScanOutput:
    status: str                      # FrameSelector.offer's outcome: selected | skipped | duplicate | backwards | ...
    perception: ScanResult | None = None
    results: list[TrackResult] = field(default_factory=list)
    inferred: bool = False           # an inference ran at this scan
    events: list[ActivityEvent] = field(default_factory=list)    # segments started or ended at this scan


def label_space(runtime: Runtime, source: str) -> list[str]:
    """The labels a pipeline emits: the bundle's classes (head) or its text-query labels."""
    if source not in LABEL_SOURCES:
        raise ValueError(f"label source must be one of {LABEL_SOURCES}, got {source!r}")
    if source == "head":
        if not runtime.has("pointcloud_head"):
            raise ValueError(f"{runtime.bundle.root}: no pointcloud_head part; use label source 'text' or export a head")
        return runtime.bundle.class_names
    if runtime.text_labels is None:
        raise ValueError(f"{runtime.bundle.root}: no text queries; export with --text-queries or use label source 'head'")
    return runtime.text_labels


class HarPipeline:
    def __init__(self, runtime: Runtime, perception: PerceptionConfig | None = None, stride: int = 3,
                 label_source: str = "head", tolerance: float = 0.25, max_gap: int | None = None,
                 infer: bool = True, fusion: FusionConfig | None = FusionConfig()) -> None:
        """``fusion``: temporal fusion of each track's windows (None: every window's own label).
        ``max_gap``: missing periods a window bridges by repeating frames (default: as many scans as
        a track survives unseen, perception's ``max_missed``). ``infer=False``: windows are cut
        exactly as for inference but nothing runs (their label is empty): the ground-truth
        person-windows that coverage is measured against."""
        meta = runtime.bundle.meta
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.runtime = runtime
        self.labels = label_space(runtime, label_source)
        self.label_source = label_source
        pcfg = perception or PerceptionConfig()
        max_gap = pcfg.max_missed if max_gap is None else max_gap
        if pcfg.points_per_frame != int(meta["points_per_frame"]):
            raise ValueError(f"points_per_frame {pcfg.points_per_frame} differs from the bundle's {meta['points_per_frame']}")
        self.perception = Perception(pcfg) if infer else None
        self.points_per_frame = pcfg.points_per_frame
        self.infer_windows = infer
        self.buffer_cfg = BufferConfig(fps=float(meta["fps"]), window=int(meta["window"]), tolerance=tolerance,
                                       max_gap=max_gap)
        self.selector = FrameSelector(self.buffer_cfg)
        self.buffers = TrackBuffers(self.buffer_cfg)
        self.encoder = StreamingPointEncoder(runtime)
        self.stride = stride
        class_names = runtime.bundle.class_names
        self.class_ids = [class_names.index(x) if x in class_names else NO_CLASS for x in self.labels]
        self.fusion = ActivityFusion(self.labels, self.class_ids, fusion) if fusion is not None and infer else None
        self.selected = 0
        self.counts = {"selected": 0, "skipped": 0, "duplicate": 0, "backwards": 0, "bad_stamp": 0, "held": 0,
                       "jump": 0, "inferences": 0, "windows": 0}

    def reset(self) -> list[ActivityEvent]:
        """Time went backwards: forget tracks, windows and cached tubes (track ids are not reused);
        returns the ended segments. The frame selector has already restarted its grid at the scan
        that went back."""
        events = self.fusion.reset() if self.fusion is not None else []
        for tid in (self.perception.reset() if self.perception is not None else []):
            self.encoder.forget(tid)
        for tid in list(self.buffers.tracks):
            self.encoder.forget(tid)
        self.buffers.reset()
        self.selected = 0
        return events

    def select(self, stamp_ns: int) -> tuple[str, list[ActivityEvent]]:
        """Frame selection by stamp (buffers.FrameSelector), counted; a stamp going backwards
        resets the pipeline (its segments end) and the scan starts a new run."""
        status = self.selector.offer(stamp_ns)
        self.counts[status] += 1
        events = self.reset() if status in ("backwards", "jump") else []     # the scan starts the new run
        return status, events

    def _forget(self, track_ids) -> list[ActivityEvent]:
        """Tracks gone (lost by perception, or their buffers dropped): no cached tubes, segments ended."""
        events = []
        for tid in track_ids:
            self.encoder.forget(tid)
            if self.fusion is not None:
                events += self.fusion.end(tid)
        return events

    def flush(self) -> list[ActivityEvent]:
        """End every ongoing segment (the end of a recording)."""
        return self.fusion.flush() if self.fusion is not None else []

    def cap_counts(self) -> dict[str, int]:
        """Tracks turned away or evicted because a per-track store already held buffers.MAX_TRACKS,
        by store: perception's tracker (new tracks refused; lost tracks forgotten before their
        re-identification time), the track windows (evicted, or refused when all were observed),
        the encoder's tube caches and the fusion filters (evicted)."""
        tracker = self.perception.tracker if self.perception is not None else None
        return {"tracks_refused": tracker.refused if tracker else 0,
                "lost_tracks_evicted": tracker.lost_evicted if tracker else 0,
                "track_windows_evicted": self.buffers.evicted, "track_windows_refused": self.buffers.refused,
                "tube_caches_evicted": self.encoder.evicted,
                "fusion_tracks_evicted": self.fusion.evicted if self.fusion is not None else 0}

    def process_scan(self, xyz: np.ndarray, stamp_ns: int, truth: np.ndarray | None = None) -> ScanOutput:
        """One scan: (N, 3) sensor-frame points (NaN allowed) at ``stamp_ns``. ``truth`` (N,) is an
        optional per-point ground-truth person id (evaluation only): each frame then carries the
        track's point counts per person (for :func:`track_person`)."""
        status, events = self.select(stamp_ns)
        if status in DROPPED:
            return ScanOutput(status)
        res = self.perception.process(xyz, stamp_ns / NS)
        events += self._forget(res.lost)
        people = {}
        for p in res.people:
            extra = None
            if truth is not None:
                ids, counts = np.unique(np.asarray(truth)[p.indices], return_counts=True)
                extra = dict(zip(ids.tolist(), counts.tolist()))
            people[p.track_id] = (p.normalised, p.centroid, extra, cloud_extent(p.points))
        return self.push_people(stamp_ns, people, status, res, events)

    def process_ground_truth(self, xyz: np.ndarray, stamp_ns: int, truth: np.ndarray,
                             people: list[int] | None = None) -> ScanOutput:
        """Ground-truth segmentation of one scan: every person in ``people`` (default: every id in
        ``truth``, the per-point person ids) is a track with its points (track id = person id); a fully
        occluded person is an empty frame, normalised to zeros exactly as the sequence store does."""
        status, events = self.select(stamp_ns)
        if status in DROPPED:
            return ScanOutput(status)
        truth = np.asarray(truth)
        ids = people or sorted(int(i) for i in np.unique(truth) if i > 0)
        observed = {}
        for pid in ids:
            pts = xyz[truth == pid]
            pts = pts[np.isfinite(pts).all(1)]
            centroid = pts.mean(0) if len(pts) else np.zeros(3, np.float32)
            frame = (normalise_frame(pts, self.points_per_frame) if self.infer_windows
                     else np.zeros((1, 3), np.float32))            # no inference: the points are never used
            observed[pid] = (frame, centroid, {pid: max(len(pts), 1)}, cloud_extent(pts))
        return self.push_people(stamp_ns, observed, status, events=events)

    def push_people(self, stamp_ns: int, people: dict, status: str = "selected", res: ScanResult | None = None,
                    events: list[ActivityEvent] | None = None) -> ScanOutput:
        """Add one selected scan's segmented people {track id: (normalised (P, 3), centroid, extra[, extent])}
        (perception's output, or ground-truth segmentation in bag-eval); infer when due."""
        events = list(events or [])
        events += self._forget(self.buffers.push(stamp_ns, people))
        self.selected += 1
        out = ScanOutput(status, res, events=events)
        if self.selected % self.stride:
            return out
        windows = self.buffers.ready()
        if not windows:
            return out
        if not self.infer_windows:
            out.results = [TrackResult(w.track_id, w.stamps, w.centroids[-1], "", -1, 0.0, np.zeros(0, np.float32),
                                       np.zeros(0, np.float32), w.extras, centroids=w.centroids, extents=w.extents)
                           for w in windows]
            return out
        out.inferred = True
        out.results = self.infer(windows)
        if self.fusion is not None:
            fused, ev = self.fusion.update(stamp_ns, [(r.track_id, r.stamps, r.scores, r.centroids, r.extents)
                                                       for r in out.results])
            for r, f in zip(out.results, fused):
                r.fused = f
            out.events += ev
        return out

    def infer(self, windows: list[Window]) -> list[TrackResult]:
        """All ready windows in one batch."""
        feats, emb = self.encoder.encode([TrackWindow(w.track_id, w.stamps, w.points) for w in windows])
        if self.label_source == "head":
            motion = (np.stack([body_motion(w.centroids, w.extents) for w in windows])
                      if self.runtime.takes_body_motion("pointcloud_head") else None)
            probs = self.runtime.classify("pointcloud", feats, motion)
        else:
            probs = self.runtime.zero_shot(emb)[1]
        self.counts["inferences"] += 1
        self.counts["windows"] += len(windows)
        out = []
        class_names = self.runtime.bundle.class_names
        for w, p, e in zip(windows, probs, emb):
            k = int(np.argmax(p))
            label = self.labels[k]
            cid = class_names.index(label) if label in class_names else NO_CLASS
            out.append(TrackResult(w.track_id, w.stamps, w.centroids[-1], label, cid, float(p[k]), p, e, w.extras,
                                   centroids=w.centroids, extents=w.extents))
        return out


@dataclass
class MatchResult:
    wearer_ids: list[str]
    track_ids: list[int]
    similarity: np.ndarray           # (W, K) cosine
    probability: np.ndarray          # (W, K) softmax over tracks at the bundle's temperature
    assigned: dict[str, int]         # wearer -> track (gated Hungarian)
    imu_labels: dict[str, tuple[str, int, float, np.ndarray]]   # wearer -> label, class id, confidence, scores
    missing: dict[str, str]          # wearers without an IMU window now, and why


def assign(similarity: np.ndarray, min_similarity: float) -> list[tuple[int, int]]:
    """Hungarian assignment maximising total cosine similarity; pairs below the gate are dropped."""
    if similarity.size == 0:
        return []
    rows, cols = linear_sum_assignment(-similarity)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if similarity[r, c] >= min_similarity]


class WearerMatcher:
    """Wearers' IMU streams against the point-cloud track embeddings of one inference batch."""

    def __init__(self, runtime: Runtime, wearers: list[str], min_similarity: float = 0.1,
                 max_stale: float = 0.15) -> None:
        if not runtime.has("imu_encoder"):
            raise ValueError(f"{runtime.bundle.root}: no imu_encoder part, cannot match wearers")
        if not wearers or len(set(wearers)) != len(wearers):
            raise ValueError(f"wearers must be distinct and not empty, got {wearers}")
        meta = runtime.bundle.meta
        self.runtime = runtime
        self.layout = runtime.bundle.imu_layout
        self.cfg = BufferConfig(fps=float(meta["fps"]), window=int(meta["window"]), max_stale=max_stale)
        self.wearers = {w: WearerImu(self.layout, self.cfg) for w in wearers}
        self.min_similarity = min_similarity
        self.temperature = float(meta["temperature"])
        self.has_head = runtime.has("imu_head") or runtime.has("imu_har")   # imu_har first: trained for the labels

    def match(self, stamps_ns: np.ndarray, track_ids: list[int], embeddings: np.ndarray) -> MatchResult:
        """Tracks whose windows share the scan stamps ``stamps_ns`` (one har_node batch)."""
        ready, windows, missing = [], [], {}
        for wid, imu in self.wearers.items():
            win, why = imu.window(stamps_ns)
            if win is None:
                missing[wid] = why
            else:
                ready.append(wid)
                windows.append(win)
        k = len(track_ids)
        sim = np.zeros((len(ready), k), np.float32)
        labels = {}
        if ready:
            feats, emb = self.runtime.encode("imu", np.stack(windows))
            if k:
                sim = emb @ np.asarray(embeddings, np.float32).T                       # (W, K) both unit vectors
            if self.has_head:
                probs = (self.runtime.recognise("imu", np.stack(windows)) if self.runtime.labeller("imu") == "imu_har"
                         else self.runtime.classify("imu", feats))      # the features already encoded above
                names = self.runtime.bundle.class_names
                for wid, p in zip(ready, probs):
                    c = int(np.argmax(p))
                    labels[wid] = (names[c], c, float(p[c]), p)
        prob = _softmax(sim / self.temperature) if k and ready else np.zeros_like(sim)
        pairs = assign(sim, self.min_similarity) if k and ready else []
        return MatchResult(ready, list(track_ids), sim, prob, {ready[r]: track_ids[c] for r, c in pairs}, labels, missing)
