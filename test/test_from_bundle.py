"""Weights recovered from a bundle's ONNX parts (despite_core.train.from_bundle): bit-exact on a small
model exported here, a pre-training checkpoint from the shipped default bundle that har.build
accepts and that reproduces the bundle under ONNX Runtime, and clear errors, never a wrong model,
for a bundle exported from another config or a broken element mapping."""
import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

from despite_core.onnx_export import EXPORT_BATCH, export_onnx
from despite_core.models.despite import DeSPITEModel
from despite_core.train import checkpoint as ckpt
from despite_core.train import from_bundle as fb
from despite_core.train.from_bundle import BundleWeightsError, checkpoint_from_bundle, encoder_state, head_state
from despite_core.train.har import build, make_head
from despite_core.train.pretrain import model_config

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # the legacy exporter, as export.py uses

DEFAULT = Path(__file__).resolve().parents[1] / "models" / "default"
CLASSES = ["a", "b", "c", "d", "e"]


def grid_points(g, b, t=24, n=256):
    """Clouds on a 1/64 grid: ball-query and FPS comparisons are exact in both runtimes."""
    return torch.randint(-32, 33, (b, t, n, 3), generator=g).float() / 64


def randomise(module, g):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def write_bundle(root: Path, cfg_dict: dict, parts: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    meta = {"model_id": "small-test", "class_names": CLASSES, "imu_layout": None,
            "parts": {name: {"file": f} for name, f in parts.items()}, "provenance": {"config": cfg_dict}}
    (root / "model.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return root


def export_encoder(enc, modality, path):
    g = torch.Generator().manual_seed(5)
    x = grid_points(g, EXPORT_BATCH) if modality == "pointcloud" else torch.randn(EXPORT_BATCH, 24, 48, generator=g)
    export_onnx(enc, x, path, "points" if modality == "pointcloud" else "imu", ["features", "embedding"], 17)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small DePIE model with random weights exported as a bundle: both encoders, an mlp head on
    the point cloud, a linear head on the IMU. Two LayerNorm weights are made equal so that the
    exporter merges their initializers (the recovery must split them again)."""
    cfg = model_config(argparse.Namespace(preset="DePIE", small=True))
    assert cfg.imu.hidden != cfg.embed_dim           # the IMU projection is a Linear, so it is recovered too
    g = torch.Generator().manual_seed(0)
    model = DeSPITEModel(cfg).eval()
    randomise(model, g)
    pst = model.encoders["pointcloud"]
    with torch.no_grad():
        pst.layers[2].norm.weight.copy_(pst.layers[0].norm.weight)
    heads = {"pointcloud": make_head("mlp", cfg.pointcloud.dim, len(CLASSES)).eval(),
             "imu": make_head("linear", cfg.imu.hidden, len(CLASSES)).eval()}
    root = tmp_path_factory.mktemp("small") / "bundle"
    root.mkdir(parents=True)
    for m in ("pointcloud", "imu"):
        export_encoder(model.encoders[m], m, root / f"{m}_encoder.onnx")
        randomise(heads[m], g)
        features = torch.randn(EXPORT_BATCH, cfg.pointcloud.dim if m == "pointcloud" else cfg.imu.hidden, generator=g)
        export_onnx(heads[m], features, root / f"{m}_head.onnx", "features", ["logits"], 17)
    write_bundle(root, cfg.to_dict(), {f"{m}_{p}": f"{m}_{p}.onnx" for m in ("pointcloud", "imu")
                                       for p in ("encoder", "head")})
    return root, cfg, model, heads


def assert_exact(got: dict, want: dict):
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        assert torch.equal(got[k], want[k]), f"{k} not recovered exactly"


def test_small_model_encoders_and_heads_recovered_bit_exactly(small):
    """encoder_state / head_state on the IMU parts (the point-cloud ones: through the checkpoint below)."""
    root, cfg, model, heads = small
    assert_exact(encoder_state(root, "imu"), model.encoders["imu"].state_dict())
    kind, state, names = head_state(root, "imu")
    assert (kind, names) == ("linear", CLASSES)
    assert_exact(state, heads["imu"].state_dict())
    assert head_state(write_bundle(root.parent / "nohead", cfg.to_dict(), {}), "imu") is None


def test_small_checkpoint_is_what_har_build_loads(small):
    root, cfg, model, heads = small
    state = checkpoint_from_bundle(root)
    assert state["kind"] == "pretrain" and state["format"] == ckpt.FORMAT and state["version"] == ckpt.VERSION
    assert state["model_config"]["preset"] == "DePIE"
    assert_exact(state["model"], model.state_dict())
    for m in ("pointcloud", "imu"):
        args = argparse.Namespace(modality=m, init=root, freeze=False, head=state["heads"][m]["kind"], small=False)
        har, _ = build(args, len(CLASSES), init_state=state)
        assert_exact(har.encoder.state_dict(), model.encoders[m].state_dict())
        assert_exact(state["heads"][m]["state"], heads[m].state_dict())
    assert [state["heads"][m]["kind"] for m in ("pointcloud", "imu")] == ["mlp", "linear"]
    assert state["heads"]["pointcloud"]["class_names"] == CLASSES
    assert state["source_bundle"]["model_id"] == "small-test"


@pytest.fixture(scope="module")
def default_state():
    if not (DEFAULT / "model.yaml").is_file():
        pytest.skip("no default bundle in this tree")
    return checkpoint_from_bundle(DEFAULT)


def session(name):
    return ort.InferenceSession(str(DEFAULT / name), providers=["CPUExecutionProvider"])


def test_default_bundle_checkpoint_reproduces_the_shipped_onnx(default_state, tmp_path):
    state = default_state
    meta = yaml.safe_load((DEFAULT / "model.yaml").read_text())
    assert state["model_config"] == dict(meta["provenance"]["config"], preset="DePIE")
    assert state["imu_layout"] == meta["imu_layout"] and state["class_names"] == meta["class_names"]
    assert state["source_bundle"]["model_id"] == meta["model_id"]
    heads = {m for m in ("pointcloud", "imu") if f"{m}_head" in meta["parts"]}
    assert "pointcloud" in heads and set(state["heads"]) == heads
    ckpt.save(state, tmp_path / "init.pt")                       # a plain, weights_only-loadable checkpoint
    state = ckpt.load(tmp_path / "init.pt", expect_kind="pretrain")
    assert ckpt.imu_layout_of(state).flat_width == 48
    g = torch.Generator().manual_seed(3)
    inputs = {"pointcloud": ("points", grid_points(g, 3)), "imu": ("imu", torch.randn(3, 24, 48, generator=g))}
    for m in sorted(heads):
        name, x = inputs[m]
        head = state["heads"][m]
        motion = int(head.get("body_motion") or 0)             # a head that takes the body motion too (bundle v2)
        args = argparse.Namespace(modality=m, init=DEFAULT, freeze=True, head=head["kind"], small=False)
        har, _ = build(args, len(meta["class_names"]), init_state=state)
        assert har.motion_dim == motion
        har.head.load_state_dict(head["state"])
        har.eval()
        mo = torch.randn(3, motion, generator=g) if motion else None
        feats, emb = session(f"{m}_encoder.onnx").run(None, {name: x.numpy()})
        feed = {"features": feats, **({"body_motion": mo.numpy()} if motion else {})}
        logits = session(f"{m}_head.onnx").run(None, feed)[0]
        with torch.no_grad():
            f_t, e_t = har.encoder(x)
            l_t = har(x, mo)
        assert np.abs(f_t.numpy() - feats).max() < 1e-4
        assert np.abs(e_t.numpy() - emb).max() < 1e-4
        assert np.abs(l_t.numpy() - logits).max() < 1e-4
        assert (l_t.argmax(1).numpy() == logits.argmax(1)).all()


def test_default_bundle_recovery_is_complete(default_state):
    """Every part recovered, nothing unused, every parameter of both encoders. How long the recovery
    takes is not a correctness property (it depends on the machine): `bench/from_bundle_speed.py`."""
    src = default_state["source_bundle"]
    heads = {p for p in ("pointcloud_head", "imu_head") if p in yaml.safe_load((DEFAULT / "model.yaml").read_text())["parts"]}
    assert "pointcloud_head" in heads and set(src["parts"]) == {"pointcloud_encoder", "imu_encoder"} | heads
    assert all(not p["unused"] and max(p["max_abs_diff"].values()) < 1e-4 for p in src["parts"].values())
    n = sum(t.numel() for t in default_state["model"].values())
    want = sum(p.numel() for m in ("pointcloud", "imu")
               for p in DeSPITEModel(replace(fb._config(DEFAULT, yaml.safe_load((DEFAULT / "model.yaml").read_text()))[1],
                                             preset="DePIE")).encoders[m].parameters())
    assert n == want


@pytest.mark.parametrize("change, match", [
    (lambda c: replace(c, pointcloud=replace(c.pointcloud, depth=3)), r"nodes in the bundle"),
    (lambda c: replace(c, pointcloud=replace(c.pointcloud, radius=0.25)), r"weight-independent value differs"),
    (lambda c: replace(c, pointcloud=replace(c.pointcloud, mlp_dim=192)), r"float32\[.*192"),
], ids=["depth", "radius", "mlp_dim"])
def test_bundle_exported_from_another_config_is_an_error(small, tmp_path, change, match):
    """The ONNX file comes from a changed config (random weights), model.yaml declares the original one."""
    _, cfg, _, _ = small
    other = DeSPITEModel(change(cfg)).encoders["pointcloud"]
    randomise(other, torch.Generator().manual_seed(1))
    export_encoder(other, "pointcloud", tmp_path / "pointcloud_encoder.onnx")
    write_bundle(tmp_path, cfg.to_dict(), {"pointcloud_encoder": "pointcloud_encoder.onnx"})
    with pytest.raises(BundleWeightsError, match=r"pointcloud_encoder\.onnx \(part pointcloud_encoder\).*" + match
                       + ".*exported by other model code"):
        checkpoint_from_bundle(tmp_path)


def test_a_wrong_element_mapping_is_caught_by_the_parity_check(default_state, monkeypatch):
    """Were an initializer's elements mapped to the wrong parameter elements (here: reversed), the
    recovered head no longer reproduces the ONNX file, and that is an error, not a model."""
    original = fb._Walk.tensors

    def reversed_values(self, a, b, s, what):
        original(self, a, b, s, what)
        if "0.weight'" in what:                      # the head's first initializer (a bare or a body-motion head)
            self.values[-1] = self.values[-1][::-1].copy()

    monkeypatch.setattr(fb._Walk, "tensors", reversed_values)
    with pytest.raises(BundleWeightsError, match=r"pointcloud_head\.onnx.*differs from the ONNX file"):
        head_state(DEFAULT, "pointcloud")


def test_missing_provenance_and_parts_are_clear_errors(tmp_path):
    with pytest.raises(BundleWeightsError, match="model.yaml: model bundle metadata not found"):
        checkpoint_from_bundle(tmp_path)
    (tmp_path / "model.yaml").write_text(yaml.safe_dump({"parts": {"imu_encoder": {"file": "imu_encoder.onnx"}}}))
    with pytest.raises(BundleWeightsError, match="imu_encoder.onnx: part 'imu_encoder' listed in model.yaml is missing"):
        encoder_state(tmp_path, "imu")
    (tmp_path / "imu_encoder.onnx").write_bytes(b"")
    with pytest.raises(BundleWeightsError, match="provenance.config"):
        encoder_state(tmp_path, "imu")


class Spare(nn.Module):
    """A Linear, a parameter the forward pass never uses, and optionally one it uses only through
    arithmetic that the exporter folds into a new initializer (2 w + 1)."""

    def __init__(self, folded: bool) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.spare = nn.Parameter(torch.randn(5))
        self.folded = folded
        self.w = nn.Parameter(torch.randn(3, 4))

    def forward(self, x):
        return self.a(x) + (x @ (self.w * 2 + 1).T if self.folded else x @ self.w.T)


@pytest.mark.parametrize("folded", [False, True])
def test_unused_weights_are_reported_and_folded_arithmetic_is_refused(tmp_path, folded):
    torch.manual_seed(4)
    shipped = Spare(folded).eval()
    path = tmp_path / "spare.onnx"
    export_onnx(shipped, torch.randn(EXPORT_BATCH, 4), path, "x", ["y"], 17)
    call = lambda: fb._recover(lambda: Spare(folded), (torch.randn(EXPORT_BATCH, 4),), (torch.randn(3, 4),),  # noqa: E731
                               path, "spare", ["x"], ["y"])
    if folded:
        with pytest.raises(BundleWeightsError, match=r"spare\.onnx \(part spare\).*computed from the weights, not copied"):
            call()
        return
    rec = call()
    assert rec.unused == ["spare"]
    for k in ("a.weight", "a.bias", "w"):
        assert torch.equal(rec.state[k], shipped.state_dict()[k]), k
    assert not torch.equal(rec.state["spare"], shipped.spare)         # not in the file: a fresh initialisation
