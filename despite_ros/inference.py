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

from despite_core.bundle import FORMAT_VERSION, REQUIRED_KEYS, sha256_file
from despite_core.data.imu_layout import ImuLayout, ImuLayoutError

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
PROVIDERS = {"auto": PROVIDER_ORDER, "cpu": ("CPUExecutionProvider",),
             "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
             "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")}


class BundleError(ValueError):
    """The bundle cannot be used as it is; the message names the file and what is wrong."""


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
        q = self.meta.get("text_queries")
        if not q:
            return None
        return list(q["phrases"]), np.asarray(q["embeddings"], np.float32)


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
        if providers not in PROVIDERS:
            raise ValueError(f"providers must be one of {sorted(PROVIDERS)}, got {providers!r}")
        available = set(ort.get_available_providers())
        chosen = [p for p in PROVIDERS[providers] if p in available]
        if providers in ("cuda", "tensorrt") and chosen[0] == "CPUExecutionProvider":
            raise RuntimeError(f"providers={providers!r} asked, but this onnxruntime offers only {sorted(available)} "
                               "(install onnxruntime-gpu instead of onnxruntime)")
        opts = ort.SessionOptions()
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

    def zero_shot(self, embedding: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Probabilities over the bundle's text queries: softmax of cosine similarity / temperature."""
        q = self.bundle.text_queries
        if q is None:
            raise KeyError(f"bundle {self.bundle.meta['model_id']} holds no text queries (export with --text-queries)")
        phrases, emb = q
        return phrases, _softmax(embedding @ emb.T / float(self.bundle.meta["temperature"]))


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
