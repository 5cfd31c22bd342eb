"""`despite export`: a model bundle (shared/ARCHITECTURE.md, "Model bundle") from a pre-training
checkpoint and, optionally, linear-probe HAR heads: ``model.yaml`` plus one ONNX file per part
(point-cloud and IMU encoders by default, the skeleton encoder on request, the heads), each with
its sha256, tensor names and shapes. ONNX Runtime is checked against PyTorch on real windows at a
batch size other than the export batch (embeddings within 1e-4, identical head argmax).

Tensor names (fixed): point-cloud encoder ``points`` (B, 24, 256, 3) -> ``features``,
``embedding``; IMU encoder ``imu`` (B, 24, C) -> ``features``, ``embedding``; skeleton encoder
``joints`` (B, 24, 24, 3) -> ``features``, ``embedding``; HAR head ``features`` -> ``logits``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import subprocess
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from despite_core.onnx_export import EXPORT_BATCH, export_onnx
from despite_core.runtime.bundle import FORMAT_VERSION, INPUT_NAMES
from despite_core.runtime.bundle import sha256_file as sha256
from despite_core.data.store import Store
from despite_core.data.windows import FPS, WINDOW
from despite_core.models.despite import DeSPITEConfig, DeSPITEModel
from despite_core.train import checkpoint as ckpt
from despite_core.train.data import WindowDataset, collate, split_ids

PARITY_BATCH = 3


class _Tube(nn.Module):
    """Streaming part 1, once per frame: (previous, current, next) frames -> the current frame's tube."""

    def __init__(self, pst) -> None:
        super().__init__()
        self.tube = pst.tube

    def forward(self, prev, cur, nxt):
        return self.tube.tube([prev, cur, nxt])


class _Window(nn.Module):
    """Streaming part 2, once per window: 12 cached tubes -> features, embedding."""

    def __init__(self, pst) -> None:
        super().__init__()
        self.pst = pst

    def forward(self, anchors, tubes):
        return self.pst.from_tubes(anchors, tubes)


def _export_streaming(pst, batch_points: torch.Tensor, out: Path, opset: int, mono_embedding: np.ndarray) -> tuple[dict, dict]:
    """Export the two streaming parts and check that tubes computed per frame and assembled per
    window reproduce the monolithic encoder (the first tube of a window sees its replicated first frame)."""
    import onnxruntime as ort

    c = pst.config
    tube_path, win_path = out / "pointcloud_tube.onnx", out / "pointcloud_window.onnx"
    f0 = batch_points[:EXPORT_BATCH, 0]
    export_onnx(_Tube(pst), (f0, f0, f0), tube_path, ("prev", "cur", "next"), ["anchors", "tube"], opset)
    with torch.no_grad():
        a_ex, t_ex = pst.tube(batch_points[:EXPORT_BATCH])
    export_onnx(_Window(pst), (a_ex, t_ex), win_path, ("anchors", "tubes"), ["features", "embedding"], opset)
    ts = ort.InferenceSession(str(tube_path), providers=["CPUExecutionProvider"])
    ws = ort.InferenceSession(str(win_path), providers=["CPUExecutionProvider"])
    x = batch_points.numpy()                                             # (B, 24, 256, 3)
    anchors, tubes = [], []
    for l in range(c.windows):
        mid = 2 * l
        left = x[:, max(mid - 1, 0)]
        a, t = ts.run(None, {"prev": left, "cur": x[:, mid], "next": x[:, min(mid + 1, c.frames - 1)]})
        anchors.append(a)
        tubes.append(t)
    _, emb = ws.run(None, {"anchors": np.stack(anchors, 1), "tubes": np.stack(tubes, 1)})
    diff = float(np.abs(emb - mono_embedding).max())
    if diff > 1e-4:
        raise RuntimeError(f"streaming parts differ from the monolithic encoder by {diff:.2e} (> 1e-4)")
    n, d = c.anchors, c.dim
    meta = {
        "pointcloud_tube": {"file": tube_path.name, "sha256": sha256(tube_path),
                            "inputs": [{"name": k, "shape": [None, c.points, 3]} for k in ("prev", "cur", "next")],
                            "outputs": [{"name": "anchors", "shape": [None, n, 3]}, {"name": "tube", "shape": [None, n, d]}]},
        "pointcloud_window": {"file": win_path.name, "sha256": sha256(win_path),
                              "inputs": [{"name": "anchors", "shape": [None, c.windows, n, 3]},
                                         {"name": "tubes", "shape": [None, c.windows, n, d]}],
                              "outputs": [{"name": "features", "shape": [None, d]}, {"name": "embedding", "shape": [None, c.embed_dim]}]},
    }
    return meta, {"pointcloud_streaming": {"max_abs_diff_embedding_vs_monolithic": diff, "batch": int(x.shape[0])}}


def _head_from(har_path: Path, encoder_state: dict, modality_prefix: str) -> tuple[str, nn.Linear, list[str]]:
    """The linear head of a frozen (linear-probe) HAR checkpoint whose encoder equals the bundle's."""
    state = ckpt.load(har_path, expect_kind="har")
    modality = state["modality"]
    if not state["args"].get("freeze"):
        raise ckpt.CheckpointError(
            f"{har_path}: this HAR head was trained with a fine-tuned encoder; a bundle's encoder serves both the "
            f"embedding and the head, so export heads trained with --freeze on the same pre-training checkpoint")
    enc = {k[len("encoder."):]: v for k, v in state["model"].items() if k.startswith("encoder.")}
    ours = {k[len(f"{modality_prefix}{modality}."):]: v for k, v in encoder_state.items()
            if k.startswith(f"{modality_prefix}{modality}.")}
    if enc.keys() != ours.keys() or any(not torch.equal(enc[k], ours[k]) for k in enc):
        raise ckpt.CheckpointError(f"{har_path}: its {modality} encoder differs from the pre-training checkpoint's")
    head, classes = _head_of(state)
    return modality, head, classes


def _head_of(state: dict) -> tuple[nn.Module, list[str]]:
    """The head (linear or MLP, with or without body-motion input) of a HAR checkpoint, in eval
    mode, and its class names."""
    from despite_core.train.heads import MotionHead, make_head

    weights = {k[len("head."):]: v for k, v in state["model"].items() if k.startswith("head.")}
    kind = state.get("head", "linear")
    motion = int(state.get("body_motion") or 0)
    inner = {k[len("head."):]: v for k, v in weights.items() if k.startswith("head.")} if motion else weights
    last = inner["weight"] if kind == "linear" else inner["4.weight"]
    first_in = inner["weight"].shape[1] if kind == "linear" else inner["1.weight"].shape[1]
    head = (MotionHead(kind, first_in - motion, motion, last.shape[0]) if motion
            else make_head(kind, first_in, last.shape[0]))
    head.load_state_dict(weights)
    return head.eval(), list(state["class_names"])


def _takes_motion(module: nn.Module) -> bool:
    """A body-motion head, or a whole HAR model (_HarPart) whose head is one."""
    from despite_core.train.heads import MotionHead

    return isinstance(module, MotionHead) or isinstance(getattr(module, "head", None), MotionHead)


def parse_text_queries(lines: list[str]) -> tuple[list[str], list[str]]:
    """``label = phrase`` (or a bare phrase, its own label) per entry -> (labels, phrases). Several
    phrases may share a label; the runtime sums their probabilities."""
    labels, phrases = [], []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        label, sep, phrase = line.partition("=")
        label, phrase = (label.strip(), phrase.strip()) if sep else (line, line)
        if not label or not phrase:
            raise ValueError(f"text query {raw!r}: expected 'label = phrase' or a phrase")
        labels.append(label)
        phrases.append(phrase)
    if not phrases:
        raise ValueError("no text queries given")
    return labels, phrases


def collect_metrics(har: list[Path], matching: Path | None) -> dict:
    """model.yaml ``metrics``: each head's test figures (its run's metrics.json) and the matching
    accuracy (``despite eval matching``'s matching.json, one window, N = 2, 4, 8, 32 candidates)."""
    import json

    metrics = {}
    for h in har:
        f = Path(h).parent / "metrics.json"
        if not f.is_file():
            raise FileNotFoundError(f"{f}: the head's metrics.json (written by despite train har) is missing")
        m = json.loads(f.read_text())
        t = m["test"]
        metrics[f"{m['modality']}_har"] = {"accuracy": round(t["accuracy"], 4), "macro_f1": round(t["macro_f1"], 4),
                                           "windows": t["windows"], "head": m.get("head", "linear"),
                                           "frozen_encoder": bool(m.get("freeze")), "source": str(f)}
    if matching is not None:
        m = json.loads(Path(matching).read_text())
        metrics["matching"] = {"split": m["split"], "source": str(matching), **{
            pair: {n: round(v["all"]["w1"][n]["accuracy"], 4) for n in ("N2", "N4", "N8", "N32") if n in v["all"]["w1"]}
            for pair, v in m["pairs"].items()}}
    return metrics


def _export_encoder(enc: nn.Module, m: str, x: torch.Tensor, out: Path, opset: int,
                    streaming: bool) -> tuple[dict, dict, torch.Tensor, np.ndarray]:
    """``{m}_encoder.onnx`` (and the streaming parts) checked against PyTorch on the windows ``x``;
    returns (parts meta, parity figures, PyTorch features, ONNX features)."""
    import onnxruntime as ort

    name = INPUT_NAMES[m]
    path = out / f"{m}_encoder.onnx"
    enc = enc.eval()
    export_onnx(enc, x[:EXPORT_BATCH], path, name, ["features", "embedding"], opset)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    f_onnx, e_onnx = sess.run(None, {name: x.numpy()})
    with torch.no_grad():
        f_t, e_t = enc(x)
    diff = float(np.abs(e_onnx - e_t.numpy()).max())
    if diff > 1e-4:
        raise RuntimeError(f"{path.name}: ONNX Runtime differs from PyTorch by {diff:.2e} (> 1e-4) on the embedding")
    parity = {f"{m}_encoder": {"max_abs_diff_embedding": diff, "max_abs_diff_features": float(np.abs(f_onnx - f_t.numpy()).max()),
                               "batch": int(x.shape[0])}}
    meta = {f"{m}_encoder": {"file": path.name, "sha256": sha256(path),
                             "inputs": [{"name": name, "shape": [None, *x.shape[1:]]}],
                             "outputs": [{"name": "features", "shape": [None, int(f_t.shape[1])]},
                                         {"name": "embedding", "shape": [None, int(e_t.shape[1])]}]}}
    if streaming:
        smeta, sparity = _export_streaming(enc, x, out, opset, e_onnx)
        meta.update(smeta)
        parity.update(sparity)
    return meta, parity, f_t, f_onnx


def _export_logits(module: nn.Module, part: str, first: str, x_t: torch.Tensor, x_onnx: np.ndarray,
                   motion: torch.Tensor | None, out: Path, opset: int) -> tuple[dict, dict]:
    """``{part}.onnx``: ``first`` (and ``body_motion`` when the module takes it) -> ``logits``;
    ONNX and PyTorch must pick the same classes."""
    import onnxruntime as ort

    path = out / f"{part}.onnx"
    module = module.eval()
    takes = _takes_motion(module)
    if takes and motion is None:
        raise ValueError(f"{part}: the head takes body motion but no windows' body motion was given")
    args = (x_t[:EXPORT_BATCH], motion[:EXPORT_BATCH]) if takes else x_t[:EXPORT_BATCH]
    names = (first, "body_motion") if takes else first
    export_onnx(module, args, path, names, ["logits"], opset)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {first: x_onnx, **({"body_motion": motion.numpy()} if takes else {})}
    logits = sess.run(None, feed)[0]
    with torch.no_grad():
        ref = (module(x_t, motion) if takes else module(x_t)).numpy()
    if not np.array_equal(logits.argmax(1), ref.argmax(1)):
        raise RuntimeError(f"{path.name}: ONNX Runtime and PyTorch disagree on the predicted class")
    parity = {part: {"max_abs_diff_logits": float(np.abs(logits - ref).max()), "argmax_equal": True}}
    inputs = [{"name": first, "shape": [None, *x_t.shape[1:]]}]
    if takes:
        inputs.append({"name": "body_motion", "shape": [None, int(motion.shape[1])]})
    meta = {part: {"file": path.name, "sha256": sha256(path), "inputs": inputs,
                   "outputs": [{"name": "logits", "shape": [None, int(ref.shape[1])]}]}}
    return meta, parity


def _export_head(head: nn.Module, m: str, f_t: torch.Tensor, f_onnx: np.ndarray, out: Path,
                 opset: int, motion: torch.Tensor | None = None) -> tuple[dict, dict]:
    """``{m}_head.onnx`` on the encoder's features (and the windows' body motion when the head takes it)."""
    return _export_logits(head, f"{m}_head", "features", f_t, f_onnx, motion, out, opset)


class _HarPart(nn.Module):
    """A HAR model exported whole (``{m}_har``): windows (and body motion) -> logits."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x, motion=None):
        f = self.encoder(x)[0]
        return self.head(f, motion) if motion is not None else self.head(f)


def export_bundle(checkpoint: Path, out: Path, *, store: Path, har: list[Path] = (), parts: tuple[str, ...] = ("pointcloud", "imu"),
                  text_queries: list[str] = (), model_id: str | None = None, split_scheme: str = "by_subject",
                  split: str = "test", opset: int = 17, metrics: dict | None = None, streaming: bool = False) -> dict:
    import yaml

    state = ckpt.load(checkpoint, expect_kind="pretrain")
    cfg = DeSPITEConfig.from_dict(state["model_config"])
    model = DeSPITEModel(cfg)
    model.load_state_dict(state["model"])
    model.eval()
    unknown = [p for p in parts if p not in INPUT_NAMES]
    if unknown:
        raise ValueError(f"unknown parts {unknown}; parts: {list(INPUT_NAMES)}")
    missing = [p for p in parts if p not in cfg.modalities]
    if missing:
        raise ValueError(f"{checkpoint}: preset {cfg.preset} has no encoder for {missing}")
    if text_queries and "text" not in cfg.modalities:
        raise ValueError(f"--text-queries needs a preset with text; {cfg.preset} has none")
    st = Store(store)
    heads = {}
    for h in har:
        modality, head, classes = _head_from(Path(h), state["model"], "encoders.")
        if classes != list(st.class_names):
            raise ckpt.CheckpointError(f"{h}: classes differ from the store's")
        if modality not in parts:
            raise ValueError(f"{h}: a {modality} head, but the bundle exports parts {list(parts)}")
        heads[modality] = head
    out.mkdir(parents=True, exist_ok=True)
    layout = ckpt.imu_layout_of(state)
    windows = WindowDataset(st, split_ids(st, split_scheme, split), tuple(parts), stride=24, cache_dir=st.root / ".cache",
                            imu_layout=layout, body_motion="pointcloud" in parts)
    batch = collate([windows[i] for i in range(min(len(windows), PARITY_BATCH))])
    if len(batch["index"]) < PARITY_BATCH:
        raise ValueError(f"{store}: fewer than {PARITY_BATCH} windows in {split_scheme}/{split} for the parity check")
    part_meta, parity = {}, {}
    for m in parts:
        meta_m, parity_m, f_t, f_onnx = _export_encoder(model.encoders[m], m, batch[m], out, opset,
                                                        streaming and m == "pointcloud")
        part_meta.update(meta_m)
        parity.update(parity_m)
        if m in heads:
            meta_h, parity_h = _export_head(heads[m], m, f_t, f_onnx, out, opset, batch.get("body_motion"))
            part_meta.update(meta_h)
            parity.update(parity_h)
    queries = None
    if text_queries:
        labels, phrases = parse_text_queries(list(text_queries))
        with torch.no_grad():
            emb = model.encoders["text"](phrases)[1].numpy()
        queries = {"labels": labels, "phrases": phrases, "embeddings": [[round(float(x), 7) for x in e] for e in emb]}
    rev = _git_revision()
    meta = {
        "format_version": FORMAT_VERSION,
        "model_id": model_id or f"{cfg.preset.lower()}-{sha256(out / part_meta[next(iter(part_meta))]['file'])[:12]}",
        "preset": cfg.preset, "class_names": list(st.class_names), "fps": FPS, "window": WINDOW,
        "points_per_frame": cfg.pointcloud.points,
        "normalisation": {"points": "per-frame: subtract the frame's mean, then farthest point sampling to "
                                    f"{cfg.pointcloud.points} points from index 0 (fewer points cycle; empty frame: zeros)",
                          "imu": "the declared imu_layout, flattened site-major", "skeleton": "centred on the window's first pelvis"},
        "imu_layout": layout.to_dict() if layout else None, "embedding_dim": cfg.embed_dim,
        "temperature": ckpt.temperature_of(state),
        "parts": part_meta, "text_queries": queries,
        "provenance": {"checkpoint": str(checkpoint), "har": [str(h) for h in har], "data": str(store),
                       "config": state["model_config"], "git_revision": rev,
                       "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "parity": parity},
        "metrics": metrics or {},
    }
    (out / "model.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, width=120))
    return {"out": str(out), "model_id": meta["model_id"], "parts": list(part_meta), "parity": parity}


def _git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def export_from_base(base: Path, har: list[Path], out: Path, *, store: Path, model_id: str | None = None,
                     split_scheme: str = "by_subject", split: str = "all", opset: int = 17,
                     har_part: bool = False) -> dict:
    """A new bundle from a base bundle and HAR checkpoints fine-tuned from it (``despite train har
    --init BASE``): the base's parts are copied; each HAR checkpoint's head replaces the base's head
    of its modality, and its encoder too when fine-tuning changed it (re-exported, with the
    streaming parts when the base has them, every part checked against PyTorch on ``store``'s
    windows). Heads of other modalities are kept when the class names are unchanged and dropped
    otherwise. model.yaml records the base, the checkpoints and what was re-exported; the base's
    matching figures are kept under ``metrics.matching`` marked as not re-measured.

    ``har_part``: a HAR checkpoint whose encoder differs from the base's (trained from scratch or
    fine-tuned for the labels) becomes a part of its own, ``{m}_har`` (windows -> logits, encoder and
    head in one graph), beside the base's encoder, which keeps serving wearer matching and text
    queries unchanged; the runtime labels that modality with it (IMU only: the live point-cloud
    labels come from the streaming encoder's features)."""
    import copy
    import shutil

    import yaml

    from despite_core.runtime.inference import BundleError, load_bundle
    from despite_core.train.from_bundle import encoder_state
    from despite_core.train.har import encoder_config

    base, out = Path(base), Path(out)
    if not har:
        raise ValueError("--base-model needs at least one --har checkpoint fine-tuned from it")
    try:
        b = load_bundle(base)
    except BundleError as e:
        raise ValueError(f"--base-model: {e}") from None
    if out.resolve() == base.resolve():
        raise ValueError(f"--out {out} is the base bundle itself; write the new bundle elsewhere")
    st = Store(store)
    meta = copy.deepcopy(b.meta)
    cfg = DeSPITEConfig.from_dict(meta["provenance"]["config"])
    out.mkdir(parents=True, exist_ok=True)
    for part in meta["parts"].values():
        shutil.copy2(base / part["file"], out / part["file"])
    parity, fine_tuned, replaced, har_parts, notes, aligned = {}, [], set(), set(), [], {}
    new_classes = list(st.class_names)
    for h in har:
        state = ckpt.load(h, expect_kind="har")
        m = state["modality"]
        if f"{m}_encoder" not in meta["parts"]:
            raise ValueError(f"{h}: a {m} model, but the base bundle has no {m}_encoder")
        head, classes = _head_of(state)
        if classes != new_classes:
            raise ckpt.CheckpointError(f"{h}: classes {classes} differ from the store's {new_classes}")
        enc = DeSPITEModel(encoder_config(cfg, m)).encoders[m]
        try:
            enc.load_state_dict({k[len("encoder."):]: v for k, v in state["model"].items() if k.startswith("encoder.")})
        except RuntimeError as e:
            raise ckpt.CheckpointError(f"{h}: its {m} encoder is not the base bundle's architecture ({str(e)[:300]})") from None
        enc.eval()
        base_enc = encoder_state(base, m)
        changed = any(not torch.equal(v, base_enc[k]) for k, v in enc.state_dict().items() if k in base_enc)
        layout = ckpt.imu_layout_of(state)
        windows = WindowDataset(st, split_ids(st, split_scheme, split), (m,), stride=24, cache_dir=st.root / ".cache",
                                imu_layout=layout, body_motion=m == "pointcloud")
        batch = collate([windows[i] for i in range(min(len(windows), PARITY_BATCH))])
        if len(batch["index"]) < PARITY_BATCH:
            raise ValueError(f"{store}: fewer than {PARITY_BATCH} windows in {split_scheme}/{split} for the parity check")
        motion = batch.get("body_motion")
        if changed and har_part:
            if layout is not None and b.imu_layout is not None and m == "imu" and layout.to_dict() != b.imu_layout.to_dict():
                raise ValueError(f"{h}: its IMU layout {layout.to_dict()} is not the base bundle's "
                                 f"{b.imu_layout.to_dict()}; the runtime feeds imu_har windows in the bundle's layout")
            if m == "pointcloud":
                raise ValueError(f"{h}: --har-part exports IMU (and skeleton) HAR models; the live point-cloud labels "
                                 "come from the streaming encoder's features, so a point-cloud model with its own "
                                 "encoder would not be used (export it without --har-part: it replaces the encoder)")
            meta_h, parity_h = _export_logits(_HarPart(enc, head), f"{m}_har", INPUT_NAMES[m], batch[m],
                                              batch[m].numpy(), motion, out, opset)
            meta["parts"].update(meta_h)
            parity.update(parity_h)
            har_parts.add(m)
            continue
        if changed:
            aligned[m] = (float((state.get("args") or {}).get("align_imu") or 0.0), (state.get("args") or {}).get("init"))
            streaming = m == "pointcloud" and "pointcloud_tube" in meta["parts"]
            meta_m, parity_m, f_t, f_onnx = _export_encoder(enc, m, batch[m], out, opset, streaming)
            meta["parts"].update(meta_m)
            parity.update(parity_m)
            fine_tuned.append(m)
        else:
            import onnxruntime as ort

            sess = ort.InferenceSession(str(out / meta["parts"][f"{m}_encoder"]["file"]), providers=["CPUExecutionProvider"])
            f_onnx = sess.run(None, {INPUT_NAMES[m]: batch[m].numpy()})[0]
            with torch.no_grad():
                f_t = enc(batch[m])[0]
        meta_h, parity_h = _export_head(head, m, f_t, f_onnx, out, opset, motion)
        meta["parts"].update(meta_h)
        parity.update(parity_h)
        replaced.add(m)
    if har_parts:
        notes.append(f"{sorted(har_parts)} labelled by their own HAR models ({', '.join(m + '_har' for m in sorted(har_parts))}); "
                     "the base's encoders serve matching and text queries unchanged")
    changed_classes = new_classes != list(meta["class_names"])
    for name in [n for n in meta["parts"] if n.endswith(("_head", "_har"))]:
        m, kind = name.rsplit("_", 1)
        fresh = m in (replaced if kind == "head" else har_parts)       # written by this export
        if fresh:
            continue
        if kind == "har" and m in replaced:
            why = f"the base's {name} would label {m} instead of the new {m}_head"
        elif changed_classes:
            why = f"trained on the base's classes, not on {new_classes}"
        else:
            continue
        (out / meta["parts"].pop(name)["file"]).unlink(missing_ok=True)
        notes.append(f"{name} dropped: {why}")
    for m in fine_tuned:
        w, init = aligned.get(m, (0.0, None))
        # aligned to the IMU encoder this bundle ships only if it trained against the base's and the
        # base's IMU encoder is kept
        kept = w and "imu" not in fine_tuned and init is not None and Path(init).resolve() == base.resolve()
        notes.append(f"the {m} encoder was fine-tuned for activity recognition " + (
            f"with its embedding kept aligned to the base's IMU encoder (train har --align-imu {w:g})" if kept else
            f"with --align-imu {w:g} against {init}, which is not this bundle's IMU encoder" if w else
            "alone: its embedding (wearer matching, zero-shot text queries) was not re-trained"))
    # a modality's HAR figures (the head's, and eval har's through the bundle) describe the labeller it had
    relabelled = replaced | har_parts | {m for m in INPUT_NAMES if f"{m}_head" not in meta["parts"]
                                         and f"{m}_har" not in meta["parts"]}
    metrics = {k: v for k, v in (meta.get("metrics") or {}).items()
               if not any(k == f"{m}_har" or k.startswith(f"{m}_har_") for m in relabelled)}
    if "matching" in metrics:
        metrics["matching"] = {**metrics["matching"], "note": "the base model's, not re-measured: `despite eval "
                               "matching --checkpoint THIS_BUNDLE --write-metrics` measures this bundle"}
    metrics.update(collect_metrics(list(har), None))
    meta.update({
        "model_id": model_id or f"{meta['model_id']}-finetuned", "class_names": new_classes, "metrics": metrics,
        "provenance": {"base_model": {"path": str(base), "model_id": b.meta["model_id"]},
                       "har": [str(h) for h in har], "data": str(store), "config": meta["provenance"]["config"],
                       "fine_tuned_encoders": fine_tuned, "notes": notes, "git_revision": _git_revision(),
                       "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "parity": parity},
    })
    (out / "model.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, width=120))
    try:
        load_bundle(out)                                  # the new bundle verifies as har_node will load it
    except BundleError as e:
        raise RuntimeError(f"the exported bundle does not verify: {e}") from None
    return {"out": str(out), "model_id": meta["model_id"], "parts": list(meta["parts"]), "fine_tuned_encoders": fine_tuned,
            "notes": notes, "parity": parity}


def run(args: argparse.Namespace) -> dict:
    if (args.checkpoint is None) == (args.base_model is None):
        raise ValueError("give --checkpoint (a pre-training checkpoint) or --base-model (a bundle the --har "
                         "checkpoints were fine-tuned from), not both")
    if args.har_part and args.base_model is None:
        raise ValueError("--har-part adds a HAR model beside a base bundle's encoders: give --base-model")
    if args.base_model is not None:
        return export_from_base(args.base_model, args.har, args.out, store=args.store, model_id=args.model_id,
                                split_scheme=args.split_scheme, split=args.split or "all",
                                opset=args.opset, har_part=args.har_part)
    queries = []
    if args.text_queries:
        queries = [q.strip() for q in args.text_queries.split(";") if q.strip()]
    if args.text_queries_file:
        queries += Path(args.text_queries_file).read_text().splitlines()
    return export_bundle(args.checkpoint, args.out, store=args.store, har=args.har, parts=tuple(args.parts.split(",")),
                         text_queries=queries, model_id=args.model_id, split_scheme=args.split_scheme,
                         split=args.split or "test", opset=args.opset, streaming=args.streaming,
                         metrics=collect_metrics(args.har, args.matching))
