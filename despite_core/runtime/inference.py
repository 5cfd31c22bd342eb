"""The inference runtime: loads a model bundle (model.yaml + ONNX parts), verifies it, and runs the
encoders and heads with ONNX Runtime. ROS-free and torch-free: numpy, PyYAML, onnxruntime.

A missing, corrupt or mismatched bundle is a :class:`BundleError` naming the file and the
mismatch. Execution providers: ``auto`` tries TensorRT, then CUDA, then CPU (those present in
this onnxruntime build); the provider actually used is reported by :attr:`Runtime.provider`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from despite_core.runtime.buffers import MAX_TRACKS
from despite_core.runtime.bundle import FORMAT_VERSION, REQUIRED_KEYS, sha256_file
from despite_core.data.body_motion import body_motion_dim
from despite_core.data.imu_layout import ImuLayout, ImuLayoutError
from despite_core.data.store import checked_imu_layout
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
    """Read and verify a bundle: model.yaml's schema (:func:`check_bundle_meta`), every part's file
    and sha256, the IMU layout. Anything wrong is a :class:`BundleError` naming the file and key."""
    root = Path(path)
    meta_path = root / "model.yaml"
    if not meta_path.is_file():
        raise BundleError(f"{meta_path}: model bundle metadata not found")
    meta = _read_meta(meta_path)
    check_bundle_meta(meta, meta_path)
    for name, part in meta["parts"].items():
        f = root / part["file"]
        if not f.is_file():
            raise BundleError(f"{f}: part {name!r} listed in model.yaml is missing")
        digest = sha256_file(f)
        if digest != part["sha256"].lower():
            raise BundleError(f"{f}: sha256 {digest[:16]}... does not match model.yaml ({part['sha256'][:16]}...): "
                              "the file is corrupt or from another export")
    try:
        layout = checked_imu_layout(meta["imu_layout"])
    except (ImuLayoutError, TypeError) as e:
        raise BundleError(f"{meta_path}: imu_layout: {e}") from None
    return Bundle(root, meta, layout)


META_MAX_BYTES = 64 * 1024 * 1024       # a model.yaml larger than this is refused, unread
MAX_SIZE = 1 << 24                      # bound of window, points_per_frame, embedding_dim and a declared dimension
MAX_FPS = 1e6
MAX_QUERY_NUMBERS = 1 << 24             # text queries x embedding_dim
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_F32_MAX = float(np.finfo(np.float32).max)


def _read_meta(meta_path: Path) -> dict:
    try:
        size = meta_path.stat().st_size
        if size > META_MAX_BYTES:
            raise BundleError(f"{meta_path}: {size} bytes, more than the {META_MAX_BYTES} a model.yaml may have")
        data = meta_path.read_bytes()
    except OSError as e:
        raise BundleError(f"{meta_path}: cannot read it ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"{meta_path}: not UTF-8 text (byte {e.start})") from None
    import yaml

    try:
        meta = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise BundleError(f"{meta_path}: not valid YAML ({e})") from None
    except Exception as e:  # noqa: BLE001 - safe_load's tag constructors raise ValueError, KeyError,
        # IndexError, AttributeError ... on malformed scalars (!!int 0x, 2026-02-30), and deep nesting RecursionError
        raise BundleError(f"{meta_path}: not valid YAML ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{meta_path}: expected a mapping of keys")
    return meta


def _kind(v) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _short(v) -> str:
    """A bounded description of a metadata value, for error messages."""
    if isinstance(v, str):
        return repr(v[:60]) + ("..." if len(v) > 60 else "")
    if isinstance(v, (bool, float, type(None))) or (isinstance(v, int) and abs(v) < 10 ** 30):
        return repr(v)
    return _kind(v)


def _int(v, key: str, bad, lo: int = 1, hi: int = MAX_SIZE) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise bad(key, f"expected an integer in {lo}..{hi}, got {_short(v)}")
    return v


def _positive(v, key: str, bad, hi: float = math.inf) -> float:
    """A finite number in (0, hi]."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise bad(key, f"expected a finite number > 0, got {_short(v)}")
    try:
        x = float(v)
    except OverflowError:
        x = math.inf
    if not (math.isfinite(x) and 0 < x <= hi):
        raise bad(key, f"expected a finite number > 0{f' and <= {hi:g}' if hi < math.inf else ''}, got {_short(v)}")
    return x


def _names(v, key: str, bad, *, distinct: bool = False, allow_empty: bool = False) -> list[str]:
    if not isinstance(v, list) or (not v and not allow_empty):
        raise bad(key, f"expected a{'' if allow_empty else ' non-empty'} list of names, got {_short(v)}")
    for i, x in enumerate(v):
        if not isinstance(x, str) or not x.strip():
            raise bad(f"{key}[{i}]", f"expected a non-empty string, got {_short(x)}")
    if distinct and len(set(v)) != len(v):
        dup = sorted({x for x in v if v.count(x) > 1})
        raise bad(key, f"lists {dup[:5]} more than once")
    return v


def _mapping(v, key: str, bad) -> dict:
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise bad(key, f"expected a mapping with text keys, got {_short(v)}")
    return v


def _inside(f) -> bool:
    """A relative file name inside the bundle (no absolute path, no '..', no backslash)."""
    return isinstance(f, str) and bool(f) and "\\" not in f and not PurePosixPath(f).is_absolute() \
        and ".." not in PurePosixPath(f).parts


def check_bundle_meta(meta: dict, meta_path: Path | str = "model.yaml") -> None:
    """Raise :class:`BundleError` naming ``meta_path`` and the key unless the parsed model.yaml has
    the format's keys with their types: the required keys; format_version; class_names distinct
    non-empty strings; fps, temperature finite > 0; window, points_per_frame, embedding_dim positive
    integers; imu_layout, normalisation, provenance, metrics mappings; parts a mapping of part name ->
    {file (inside the bundle), sha256, inputs, outputs: [{name, shape: [null | int >= 1, ...]}]}, a
    ``*_head``'s output (None, len(class_names)), an ``embedding`` output (None, embedding_dim);
    text_queries (optional) phrases, labels and (Q, embedding_dim) finite embeddings, Q = labels."""
    def bad(key: str, msg: str) -> BundleError:
        return BundleError(f"{meta_path}: {key}: {msg}")

    if not isinstance(meta, dict):
        raise BundleError(f"{meta_path}: expected a mapping of keys")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise BundleError(f"{meta_path}: missing keys {missing}")
    v = meta["format_version"]
    if isinstance(v, bool) or v != FORMAT_VERSION:
        raise BundleError(f"{meta_path}: format_version {_short(v)} is not supported (this reads {FORMAT_VERSION})")
    for key in ("model_id", "preset"):
        if not isinstance(meta[key], str) or not meta[key].strip():
            raise bad(key, f"expected a non-empty string, got {_short(meta[key])}")
    classes = _names(meta["class_names"], "class_names", bad, distinct=True)
    _positive(meta["fps"], "fps", bad, MAX_FPS)
    _positive(meta["temperature"], "temperature", bad)
    for key in ("window", "points_per_frame", "embedding_dim"):
        _int(meta[key], key, bad)
    dim = meta["embedding_dim"]
    for key in ("normalisation", "imu_layout", "metrics"):
        _mapping(meta[key], key, bad)
    prov = _mapping(meta["provenance"], "provenance", bad)
    config = _mapping(prov.get("config", {}), "provenance.config", bad)
    pc = _mapping(config.get("pointcloud", {}), "provenance.config.pointcloud", bad)
    if not isinstance(pc.get("temporal_padding", []), list):
        raise bad("provenance.config.pointcloud.temporal_padding", f"expected a list, got {_short(pc['temporal_padding'])}")
    parts = _mapping(meta["parts"], "parts", bad)
    if not parts:
        raise bad("parts", "lists no part")
    for name, part in parts.items():
        where = f"parts.{name}"
        _mapping(part, where, bad)
        if not _inside(part.get("file")):
            raise bad(f"{where}.file", f"expected a file name inside the bundle, got {_short(part.get('file'))}")
        if not isinstance(part.get("sha256"), str) or not _SHA256.fullmatch(part["sha256"]):
            raise bad(f"{where}.sha256", f"expected the file's sha256 (64 hex digits), got {_short(part.get('sha256'))}")
        for kind in ("inputs", "outputs"):
            tensors = part.get(kind)
            if not isinstance(tensors, list) or not tensors:
                raise bad(f"{where}.{kind}", f"expected a non-empty list of {{name, shape}}, got {_short(tensors)}")
            for i, t in enumerate(tensors):
                tw = f"{where}.{kind}[{i}]"
                if not isinstance(t, dict):
                    raise bad(tw, f"expected a mapping {{name, shape}}, got {_short(t)}")
                if not isinstance(t.get("name"), str) or not t["name"]:
                    raise bad(f"{tw}.name", f"expected a tensor name, got {_short(t.get('name'))}")
                shape = t.get("shape")
                if not isinstance(shape, list) or not shape:
                    raise bad(f"{tw}.shape", f"expected a list of dimensions (null = any), got {_short(shape)}")
                for j, d in enumerate(shape):
                    if d is not None:
                        _int(d, f"{tw}.shape[{j}]", bad)
                if t["name"] == "body_motion" and kind == "inputs" and shape != [None, body_motion_dim(meta["window"])]:
                    raise bad(f"{tw}.shape", f"a body_motion input is [null, 4 x window] = "
                                             f"[null, {body_motion_dim(meta['window'])}], got {shape}")
                if t["name"] == "embedding" and kind == "outputs" and shape != [None, dim]:
                    raise bad(f"{tw}.shape", f"an embedding output is [null, embedding_dim] = [null, {dim}], got {shape}")
        if name.endswith(("_head", "_har")):
            shape = part["outputs"][0]["shape"]
            if len(shape) != 2 or shape[1] != len(classes):
                raise bad(f"{where}.outputs[0].shape", f"the head's output {shape} does not give one score per class: "
                                                      f"class_names lists {len(classes)} (expected [null, {len(classes)}])")
    _check_text_queries(meta.get("text_queries"), dim, bad)


def _check_text_queries(q, dim: int, bad) -> None:
    if q is None:
        return
    _mapping(q, "text_queries", bad)
    if not q:
        return
    phrases = _names(q.get("phrases"), "text_queries.phrases", bad)
    labels = _names(q.get("labels", phrases), "text_queries.labels", bad)
    if len(labels) != len(phrases):
        raise bad("text_queries.labels", f"{len(labels)} labels for {len(phrases)} phrases")
    emb = q.get("embeddings")
    n = len(labels)
    if not isinstance(emb, list) or len(emb) != n:
        raise bad("text_queries.embeddings", f"expected {n} rows (one per phrase) of {dim} numbers, "
                                             f"got {len(emb) if isinstance(emb, list) else _short(emb)}")
    if n * dim > MAX_QUERY_NUMBERS:
        raise bad("text_queries.embeddings", f"{n} x {dim} numbers, more than {MAX_QUERY_NUMBERS}")
    for i, row in enumerate(emb):
        if not isinstance(row, list) or len(row) != dim:
            raise bad(f"text_queries.embeddings[{i}]", f"expected {dim} numbers (embedding_dim), got "
                                                       f"{len(row) if isinstance(row, list) else _short(row)}")
        for j, x in enumerate(row):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise bad(f"text_queries.embeddings[{i}][{j}]", f"expected a number, got {_short(x)}")
            if not -_F32_MAX <= x <= _F32_MAX:      # NaN fails too; a huge integer compares exactly
                raise bad(f"text_queries.embeddings[{i}][{j}]", f"{_short(x)} is not finite in float32")


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

    def takes_body_motion(self, part: str) -> bool:
        """Whether a part (a ``*_head`` or ``*_har``) declares the ``body_motion`` input
        (despite_core.data.body_motion), which the caller must then give."""
        return any(t["name"] == "body_motion" for t in self.bundle.parts.get(part, {}).get("inputs", []))

    def _feed(self, name: str, first: tuple[str, np.ndarray], body_motion: np.ndarray | None) -> dict:
        feed = {first[0]: np.ascontiguousarray(first[1], dtype=np.float32)}
        if self.takes_body_motion(name):
            if body_motion is None:
                raise ValueError(f"part {name} of bundle {self.bundle.meta['model_id']} takes the windows' body_motion "
                                 "too (despite_core.data.body_motion); none was given")
            feed["body_motion"] = np.ascontiguousarray(body_motion, dtype=np.float32)
        return feed

    def classify(self, modality: str, features: np.ndarray, body_motion: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities (B, classes) from the modality's HAR head on the encoder's features
        (and the windows' body motion when the head declares that input)."""
        name = f"{modality}_head"
        if name not in self.sessions:
            raise KeyError(f"bundle {self.bundle.meta['model_id']} has no {name}; parts: {list(self.sessions)}")
        logits = self.sessions[name].run(None, self._feed(name, ("features", features), body_motion))[0]
        return _softmax(logits)

    def recognise(self, modality: str, x: np.ndarray, body_motion: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities (B, classes) from the modality's own HAR model (``{modality}_har``: an
        encoder trained for the labels, beside the matching encoder) on a batch of windows."""
        name = f"{modality}_har"
        if name not in self.sessions:
            raise KeyError(f"bundle {self.bundle.meta['model_id']} has no {name}; parts: {list(self.sessions)}")
        sess = self.sessions[name]
        logits = sess.run(None, self._feed(name, (sess.get_inputs()[0].name, x), body_motion))[0]
        return _softmax(logits)

    def labeller(self, modality: str) -> str:
        """The part that labels the modality: its own HAR model ``{modality}_har`` when the bundle has
        one, else ``{modality}_head`` on the encoder's features."""
        return f"{modality}_har" if f"{modality}_har" in self.sessions else f"{modality}_head"

    def scores(self, modality: str, x: np.ndarray, body_motion: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities (B, classes) of a batch of windows by the modality's :meth:`labeller`."""
        if self.labeller(modality).endswith("_har"):
            return self.recognise(modality, x, body_motion)
        return self.classify(modality, self.encode(modality, x)[0], body_motion)

    def needs_body_motion(self, modality: str) -> bool:
        """Whether :meth:`scores` for the modality needs the windows' body motion."""
        return self.takes_body_motion(self.labeller(modality))

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
    its previous one (time went backwards) loses its cache. At most ``max_tracks`` tracks keep a
    cache (buffers.MAX_TRACKS): beyond, the least recently encoded are forgotten (:attr:`evicted`).
    """

    def __init__(self, runtime: Runtime, idle_calls: int = 8, max_tracks: int = MAX_TRACKS) -> None:
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
        self.max_tracks = max_tracks
        self.evicted = 0                         # track caches forgotten to stay within max_tracks
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
        if len(self._cache) > self.max_tracks:      # least recently encoded first, this call's tracks last
            for tid in sorted(self._cache, key=lambda t: self._last_call.get(t, 0))[:len(self._cache) - self.max_tracks]:
                self.forget(tid)
                self.evicted += 1
        return feats, emb


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
