"""The inference runtime: loads a model bundle (model.yaml + ONNX parts), verifies it, and runs the
encoders and heads with ONNX Runtime. ROS-free and torch-free: numpy, PyYAML, onnxruntime.

A missing, corrupt or mismatched bundle is a :class:`BundleError` naming the file and the
mismatch. Execution providers: ``auto`` tries TensorRT, then CUDA, then CPU (those present in
this onnxruntime build); the provider actually used is reported by :attr:`Runtime.provider`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from despite_core.runtime.bundle import FORMAT_VERSION, REQUIRED_KEYS, sha256_file
from despite_core.data.imu_layout import ImuLayout, ImuLayoutError
from despite_core.install import SOURCE_ROOT, install_prefixes, installed

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
PROVIDERS = {"auto": PROVIDER_ORDER, "cpu": ("CPUExecutionProvider",),
             "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
             "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")}


class BundleError(ValueError):
    """The bundle cannot be used as it is; the message names the file and what is wrong."""


def choose_providers(providers: str, available) -> list[str]:
    """The ONNX Runtime execution providers for a ``providers`` setting, in priority order, among
    ``available``: ``auto`` takes the best there is (TensorRT, then CUDA, then CPU); ``cuda`` and
    ``tensorrt`` demand their own (CPU stays as ONNX Runtime's fallback for unsupported operators)
    and are an error when it is missing, never a silent fallback to something slower."""
    if providers not in PROVIDERS:
        raise ValueError(f"providers must be one of {sorted(PROVIDERS)}, got {providers!r}")
    available = set(available)
    chosen = [p for p in PROVIDERS[providers] if p in available]
    if providers != "auto" and (not chosen or chosen[0] != PROVIDERS[providers][0]):
        hint = (" (install onnxruntime-gpu instead of onnxruntime)" if providers in ("cuda", "tensorrt") else "")
        raise RuntimeError(f"providers={providers!r} asks for {PROVIDERS[providers][0]}, but this onnxruntime offers "
                           f"only {sorted(available)}{hint}")
    if not chosen:
        raise RuntimeError(f"this onnxruntime offers none of {list(PROVIDER_ORDER)}: {sorted(available)}")
    return chosen


@dataclass(frozen=True)
class Bundle:
    root: Path
    meta: dict[str, Any]
    imu_layout: ImuLayout

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def parts(self) -> dict[str, dict]:
        return self.meta["parts"]

    @property
    def text_queries(self) -> tuple[list[str], np.ndarray] | None:
        """(label per phrase, phrase embeddings (Q, D)), or None when the bundle has no queries."""
        q = self.meta.get("text_queries")
        if not q:
            return None
        return list(q.get("labels", q["phrases"])), np.asarray(q["embeddings"], np.float32)


def default_bundle_path() -> Path:
    """The shipped default bundle: share/despite_ros/models/default of the install
    (despite_core.install), else the source tree's models/default."""
    found = installed("share/despite_ros/models/default/model.yaml")
    if found is not None:
        return found.parent
    source = SOURCE_ROOT / "models" / "default"
    if (source / "model.yaml").is_file():
        return source
    raise BundleError(f"no default model bundle found under {[str(p) for p in install_prefixes()]}/share/despite_ros/"
                      f"models/default or {source}; pass a bundle directory (parameter 'model')")


def load_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle: keys, version, every part's file and sha256, the IMU layout."""
    import yaml

    root = Path(path)
    meta_path = root / "model.yaml"
    if not meta_path.is_file():
        raise BundleError(f"{meta_path}: model bundle metadata not found")
    try:
        meta = yaml.safe_load(meta_path.read_text())
    except yaml.YAMLError as e:
        raise BundleError(f"{meta_path}: not valid YAML ({e})") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{meta_path}: expected a mapping of keys")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise BundleError(f"{meta_path}: missing keys {missing}")
    if meta["format_version"] != FORMAT_VERSION:
        raise BundleError(f"{meta_path}: format_version {meta['format_version']} is not supported (this reads {FORMAT_VERSION})")
    for name, part in meta["parts"].items():
        f = root / str(part.get("file", ""))
        if not f.is_file():
            raise BundleError(f"{f}: part {name!r} listed in model.yaml is missing")
        digest = sha256_file(f)
        if digest != part.get("sha256"):
            raise BundleError(f"{f}: sha256 {digest[:16]}... does not match model.yaml ({str(part.get('sha256'))[:16]}...): "
                              "the file is corrupt or from another export")
    try:
        layout = ImuLayout.from_dict(meta["imu_layout"])
    except (ImuLayoutError, TypeError) as e:
        raise BundleError(f"{meta_path}: imu_layout: {e}") from None
    return Bundle(root, meta, layout)


def _same_shape(declared: list, onnx_shape: list) -> bool:
    if len(declared) != len(onnx_shape):
        return False
    for d, o in zip(declared, onnx_shape):
        if d is None:
            if isinstance(o, int):
                return False          # declared dynamic, the file has a fixed size
        elif d != o:
            return False
    return True


class Runtime:
    """ONNX Runtime sessions for a bundle's parts, checked against model.yaml."""

    def __init__(self, bundle: Bundle | str | Path, providers: str = "auto", threads: int | None = None) -> None:
        import onnxruntime as ort

        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        chosen = choose_providers(providers, ort.get_available_providers())
        opts = ort.SessionOptions()
        # The parts run alternately (tube, window, head): a session's idle workers must not spin
        # and steal the cores from the next one (measured: 2-3x slower streaming at batch 8).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.sessions: dict[str, Any] = {}
        for name, part in self.bundle.parts.items():
            path = self.bundle.root / part["file"]
            try:
                sess = ort.InferenceSession(str(path), sess_options=opts, providers=chosen)
            except Exception as e:  # onnxruntime raises its own exception types
                raise BundleError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0][:200]})") from None
            self._check_io(path, part, sess)
            self.sessions[name] = sess
        self.provider = next(iter(self.sessions.values())).get_providers()[0] if self.sessions else "none"
        self._text = None                     # (vocabulary, phrase -> label (Q, L), phrase embeddings (Q, D))
        if self.bundle.text_queries is not None:
            labels, emb = self.bundle.text_queries
            self._text = (*phrase_labels(labels), emb)

    @staticmethod
    def _check_io(path: Path, part: dict, sess) -> None:
        for kind, actual in (("inputs", sess.get_inputs()), ("outputs", sess.get_outputs())):
            declared = part.get(kind, [])
            names = [a.name for a in actual]
            if [d["name"] for d in declared] != names:
                raise BundleError(f"{path}: {kind} {names} do not match model.yaml {[d['name'] for d in declared]}")
            for d, a in zip(declared, actual):
                if not _same_shape(d["shape"], list(a.shape)):
                    raise BundleError(f"{path}: {kind[:-1]} {a.name!r} has shape {list(a.shape)}, model.yaml says {d['shape']}")

    def has(self, part: str) -> bool:
        return part in self.sessions

    def encode(self, modality: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features, embedding) of a batch of windows of ``modality`` (pointcloud, imu, skeleton)."""
        name = f"{modality}_encoder"
        if name not in self.sessions:
            raise KeyError(f"bundle {self.bundle.meta['model_id']} has no {name}; parts: {list(self.sessions)}")
        sess = self.sessions[name]
        feats, emb = sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})
        return feats, emb

    def tube(self, prev: np.ndarray, cur: np.ndarray, nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Streaming part 1, once per frame and track: (B, 256, 3) normalised frames -> anchors, tube."""
        if "pointcloud_tube" not in self.sessions:
            raise KeyError(f"bundle {self.bundle.meta['model_id']} has no streaming parts (export with --streaming)")
        f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        a, t = self.sessions["pointcloud_tube"].run(None, {"prev": f32(prev), "cur": f32(cur), "next": f32(nxt)})
        return a, t

    def window_from_tubes(self, anchors: np.ndarray, tubes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Streaming part 2, once per window: (B, 12, 8, 3) anchors and (B, 12, 8, 80) tubes -> features, embedding."""
        if "pointcloud_window" not in self.sessions:
            raise KeyError(f"bundle {self.bundle.meta['model_id']} has no streaming parts (export with --streaming)")
        f, e = self.sessions["pointcloud_window"].run(None, {"anchors": np.ascontiguousarray(anchors, dtype=np.float32),
                                                             "tubes": np.ascontiguousarray(tubes, dtype=np.float32)})
        return f, e

    def classify(self, modality: str, features: np.ndarray) -> np.ndarray:
        """Class probabilities (B, classes) from the modality's HAR head."""
        name = f"{modality}_head"
        if name not in self.sessions:
            raise KeyError(f"bundle {self.bundle.meta['model_id']} has no {name}; parts: {list(self.sessions)}")
        logits = self.sessions[name].run(None, {"features": np.ascontiguousarray(features, dtype=np.float32)})[0]
        return _softmax(logits)

    @property
    def text_labels(self) -> list[str] | None:
        """The distinct labels of the bundle's text queries, in order (None without queries)."""
        return None if self._text is None else list(self._text[0])

    def zero_shot(self, embedding: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Open-vocabulary labels of (B, D) unit embeddings: (the distinct query labels in order,
        (B, L) probabilities), a softmax over all phrases of cosine similarity / temperature with
        the probabilities of phrases sharing a label summed."""
        if self._text is None:
            raise KeyError(f"bundle {self.bundle.meta['model_id']} holds no text queries (export with --text-queries)")
        vocab, member, emb = self._text
        per_phrase = _softmax(embedding @ emb.T / float(self.bundle.meta["temperature"]))   # (B, Q)
        return list(vocab), per_phrase @ member


def phrase_labels(labels: list[str]) -> tuple[list[str], np.ndarray]:
    """(the distinct labels in first-seen order, the (Q, L) 0/1 matrix mapping each phrase to its label)."""
    vocab = list(dict.fromkeys(labels))
    member = np.zeros((len(labels), len(vocab)), np.float32)
    member[np.arange(len(labels)), [vocab.index(lb) for lb in labels]] = 1
    return vocab, member


@dataclass(frozen=True)
class TrackWindow:
    """One track's ready window for the streaming encoder: the 24 normalised frames and the stamps
    that identify them (int nanoseconds; a track's frame at a stamp never changes)."""

    track_id: int
    stamps: np.ndarray          # (T,) int64 ns, strictly increasing
    points: np.ndarray          # (T, P, 3) float32, normalised as the bundle declares


class StreamingPointEncoder:
    """The point-cloud encoder with per-track tube caches: each frame's tube (sampling, grouping,
    tube features) is computed once per track and reused by every window that contains it with the
    same neighbours; only the per-window remainder runs per window. All ready tracks go through ONNX
    Runtime together: one batch of missing tubes, one batch of windows.

    The encoder's temporal padding [1, 0] replicates a window's first frame, so the first tube of
    every window is its own cache entry (prev == cur). Cache keys are the stamps of (prev, cur,
    next), so gaps never return a tube computed from other frames; a track whose window starts earlier than
    its previous one (time went backwards) loses its cache.
    """

    def __init__(self, runtime: Runtime, idle_calls: int = 8) -> None:
        for part in ("pointcloud_tube", "pointcloud_window"):
            if not runtime.has(part):
                raise BundleError(f"{runtime.bundle.root}: no {part} part; export the bundle with --streaming")
        pc = runtime.bundle.meta.get("provenance", {}).get("config", {}).get("pointcloud", {})
        geometry = (pc.get("temporal_kernel"), pc.get("temporal_stride"), list(pc.get("temporal_padding", [])))
        if geometry != (3, 2, [1, 0]):
            raise BundleError(f"{runtime.bundle.root}: streaming supports temporal kernel 3, stride 2, padding [1, 0]; "
                              f"the bundle's encoder has {geometry}")
        self.runtime = runtime
        self.frames = int(runtime.bundle.meta["window"])
        self.centres = list(range(0, self.frames, 2))                # a tube per even frame of the window
        declared = runtime.bundle.parts["pointcloud_window"]["inputs"][0]["shape"][1]
        if declared != len(self.centres):
            raise BundleError(f"{runtime.bundle.root}: pointcloud_window takes {declared} tubes, a {self.frames}-frame "
                              f"window gives {len(self.centres)}")
        self.idle_calls = idle_calls
        self._cache: dict[int, dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]]] = {}
        self._last_call: dict[int, int] = {}
        self._last_start: dict[int, int] = {}
        self._calls = 0
        self.tubes_computed = 0
        self.tubes_reused = 0

    def forget(self, track_id: int) -> None:
        """Drop a lost track's cache."""
        self._cache.pop(track_id, None)
        self._last_call.pop(track_id, None)
        self._last_start.pop(track_id, None)

    @property
    def cached_tubes(self) -> int:
        return sum(len(c) for c in self._cache.values())

    def encode(self, windows: list[TrackWindow]) -> tuple[np.ndarray, np.ndarray]:
        """(features (B, F), embeddings (B, D)) of the windows, in order."""
        if not windows:
            raise ValueError("encode() needs at least one window")
        ids = [w.track_id for w in windows]
        if len(set(ids)) != len(ids):
            raise ValueError(f"one window per track per call; got track ids {ids}")
        self._calls += 1
        keys: list[list[tuple[int, int, int]]] = []
        todo: dict[tuple[int, tuple[int, int, int]], tuple[int, int, int, int]] = {}   # -> (window, prev, cur, next)
        for b, w in enumerate(windows):
            if w.points.shape[0] != self.frames or len(w.stamps) != self.frames:
                raise ValueError(f"track {w.track_id}: a window has {self.frames} frames, got {w.points.shape[0]} "
                                 f"and {len(w.stamps)} stamps")
            st = [int(x) for x in w.stamps]
            if any(b <= a for a, b in zip(st, st[1:])):
                raise ValueError(f"track {w.track_id}: window stamps must increase strictly")
            if st[0] < self._last_start.get(w.track_id, st[0]):
                self.forget(w.track_id)         # time went backwards (a bag looping): stamps no longer identify frames
            self._last_start[w.track_id] = st[0]
            cache = self._cache.setdefault(w.track_id, {})
            row = []
            for c in self.centres:
                p, n = max(c - 1, 0), min(c + 1, self.frames - 1)
                key = (st[p], st[c], st[n])
                row.append(key)
                if key not in cache:
                    todo[(w.track_id, key)] = (b, p, c, n)
            keys.append(row)
        if todo:
            idx = list(todo.values())
            prev = np.stack([windows[b].points[p] for b, p, _, _ in idx])     # (M, P, 3)
            cur = np.stack([windows[b].points[c] for b, _, c, _ in idx])
            nxt = np.stack([windows[b].points[n] for b, _, _, n in idx])
            anchors, tubes = self.runtime.tube(prev, cur, nxt)                 # (M, n, 3), (M, n, d)
            for m, (tid, key) in enumerate(todo):
                self._cache[tid][key] = (anchors[m], tubes[m])
        self.tubes_computed += len(todo)
        self.tubes_reused += sum(len(r) for r in keys) - len(todo)
        a = np.stack([np.stack([self._cache[w.track_id][k][0] for k in row]) for w, row in zip(windows, keys)])   # (B, L, n, 3)
        t = np.stack([np.stack([self._cache[w.track_id][k][1] for k in row]) for w, row in zip(windows, keys)])   # (B, L, n, d)
        feats, emb = self.runtime.window_from_tubes(a, t)
        for w in windows:                       # entries centred before this window's start are never needed again
            start = int(w.stamps[0])
            cache = self._cache[w.track_id]
            for k in [k for k in cache if k[1] < start]:
                del cache[k]
            self._last_call[w.track_id] = self._calls
        for tid in [t for t, c in self._last_call.items() if self._calls - c > self.idle_calls]:
            self.forget(tid)
        return feats, emb


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
