"""Fine-tuning the shipped model: `despite train har --init models/default` starts from the bundle's
own encoder and head (with a zero learning rate it labels exactly as the bundle does through ONNX
Runtime), `--test-store` scores on another store, and `despite export --base-model` writes a new
bundle: the head replaced, the encoder re-exported only when fine-tuning changed it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.despite_cli import despite as run, store_pair, train_har

BIN = Path(sys.executable).parent


def _default_model() -> Path:
    from despite_core.runtime.inference import default_bundle_path

    return default_bundle_path()


def fine_tune(stores: Path, out: Path, base: Path, lr: float, *extra) -> dict:
    """One epoch of `train har --init BASE` on the train store, scored on the whole test store."""
    return train_har(stores, out, *extra, "--init", base, "--modality", "pointcloud", "--head", "mlp", "--lr", lr)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return store_pair(tmp_path_factory.mktemp("ft"), (31, 32))


def test_init_from_the_bundle_reproduces_it_and_export_keeps_the_unchanged_encoder(stores, tmp_path):
    import yaml

    base = _default_model()
    # lr 0: nothing moves, so the recovered encoder + head must label the test windows as the bundle does
    m = fine_tune(stores, tmp_path / "r0", base, lr=0)
    assert m["init_head"] is True and m["test_store"] == str(stores / "test")
    run("eval", "har", "--model", base, "--store", stores / "test", "--split", "all", "--stride", "4",
        "--out", tmp_path / "e0", "--quiet")
    onnx = json.loads((tmp_path / "e0" / "har.json").read_text())
    n = onnx["windows"]
    assert m["test"]["windows"] == n > 20
    # PyTorch and ONNX Runtime may split a near tie differently: at most one window apart
    assert m["test"]["accuracy"] == pytest.approx(onnx["accuracy"], abs=1.5 / n)
    # export: the encoder is unchanged, so its parts are the base's files; the head is the checkpoint's
    out = run("export", "--base-model", base, "--har", tmp_path / "r0" / "har.pt", "--store", stores / "train",
              "--out", tmp_path / "b0", "--model-id", "t0")
    res = json.loads(out.stdout)
    assert res["fine_tuned_encoders"] == []
    meta = yaml.safe_load((tmp_path / "b0" / "model.yaml").read_text())
    base_meta = yaml.safe_load((base / "model.yaml").read_text())
    for part in base_meta["parts"]:                                     # every part but the replaced head
        if part != "pointcloud_head":
            assert meta["parts"][part]["sha256"] == base_meta["parts"][part]["sha256"], part
    assert meta["model_id"] == "t0" and meta["provenance"]["base_model"]["model_id"] == base_meta["model_id"]
    assert meta["metrics"]["matching"]["note"].startswith("the base model's")


def test_fine_tuning_moves_the_encoder_and_the_new_bundle_runs(stores, tmp_path):
    import yaml

    base = _default_model()
    m = fine_tune(stores, tmp_path / "r1", base, lr=0.01)
    out = run("export", "--base-model", base, "--har", tmp_path / "r1" / "har.pt", "--store", stores / "train",
              "--out", tmp_path / "b1")
    res = json.loads(out.stdout)
    assert res["fine_tuned_encoders"] == ["pointcloud"]
    meta = yaml.safe_load((tmp_path / "b1" / "model.yaml").read_text())
    base_meta = yaml.safe_load((base / "model.yaml").read_text())
    for part in ("pointcloud_encoder", "pointcloud_tube", "pointcloud_window", "pointcloud_head"):
        assert meta["parts"][part]["sha256"] != base_meta["parts"][part]["sha256"], part
    assert meta["parts"]["imu_encoder"]["sha256"] == base_meta["parts"]["imu_encoder"]["sha256"]
    assert meta["provenance"]["parity"]["pointcloud_streaming"]["max_abs_diff_embedding_vs_monolithic"] < 1e-4
    # the new bundle through ONNX Runtime labels the test windows as the fine-tuned PyTorch model did
    run("eval", "har", "--model", tmp_path / "b1", "--store", stores / "test", "--split", "all", "--stride", "4",
        "--out", tmp_path / "e1", "--quiet")
    onnx = json.loads((tmp_path / "e1" / "har.json").read_text())
    assert m["test"]["accuracy"] == pytest.approx(onnx["accuracy"], abs=1.5 / onnx["windows"])
    # its matching is the base's until measured on the bundle itself: eval matching --write-metrics does
    assert meta["metrics"]["matching"]["note"].startswith("the base model's")
    assert "--write-metrics" in meta["metrics"]["matching"]["note"]           # says how to measure this bundle
    assert any("fine-tuned for activity recognition alone" in n for n in meta["provenance"]["notes"])
    run("eval", "matching", "--checkpoint", tmp_path / "b1", "--store", stores / "test", "--split", "all",
        "--sizes", "2,4", "--windows", "1", "--scenes", "50", "--out", tmp_path / "m1", "--write-metrics", "--quiet")
    measured = json.loads((tmp_path / "m1" / "matching.json").read_text())
    got = yaml.safe_load((tmp_path / "b1" / "model.yaml").read_text())["metrics"]["matching"]
    assert "note" not in got and got["source"] == str(tmp_path / "m1" / "matching.json")
    assert "--sizes 2,4 --windows 1" in got["command"]
    assert got["pointcloud->imu"]["N2"] == round(measured["pairs"]["pointcloud->imu"]["all"]["w1"]["N2"]["accuracy"], 4)
    from despite_core.runtime.inference import load_bundle

    load_bundle(tmp_path / "b1")                                         # still verifies
    out = run("eval", "matching", "--checkpoint", tmp_path / "r1" / "har.pt", "--store", stores / "test",
              "--out", tmp_path / "m2", "--write-metrics", "--quiet", ok=False)
    assert out.returncode == 2 and "bundle directory" in out.stderr


def test_encoder_lr_zero_trains_the_head_alone(stores, tmp_path):
    import yaml

    base = _default_model()
    m = fine_tune(stores, tmp_path / "r2", base, 0.01, "--encoder-lr", "0")
    assert m["lr"] == 0.01 and m["encoder_lr"] == 0
    out = run("export", "--base-model", base, "--har", tmp_path / "r2" / "har.pt", "--store", stores / "train",
              "--out", tmp_path / "b2")
    assert json.loads(out.stdout)["fine_tuned_encoders"] == []          # the encoder did not move
    meta = yaml.safe_load((tmp_path / "b2" / "model.yaml").read_text())
    base_meta = yaml.safe_load((base / "model.yaml").read_text())
    assert meta["parts"]["pointcloud_head"]["sha256"] != base_meta["parts"]["pointcloud_head"]["sha256"]
    assert meta["parts"]["pointcloud_encoder"]["sha256"] == base_meta["parts"]["pointcloud_encoder"]["sha256"]


def test_bad_fine_tuning_requests_are_clear_errors(stores, tmp_path):
    out = subprocess.run([str(BIN / "despite"), "export", "--base-model", str(_default_model()), "--checkpoint", "x.pt",
                          "--store", str(stores / "train"), "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "not both" in out.stderr
    bad = tmp_path / "notabundle"
    bad.mkdir()
    out = subprocess.run([str(BIN / "despite"), "train", "har", "--store", str(stores / "train"), "--out", str(tmp_path / "r"),
                          "--init", str(bad), "--epochs", "1", "--quiet"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "model.yaml" in out.stderr and "Traceback" not in out.stderr


def test_seen_class_loss_leaves_the_other_classes_logits_alone():
    import numpy as np
    import torch

    from despite_core.train.har import loss_mask, masked_cross_entropy

    labels = np.array([0, 2, 2, -1])
    seen = loss_mask("seen", False, labels, 4)
    assert seen.tolist() == [True, False, True, False]
    assert loss_mask("auto", True, labels, 4).tolist() == seen.tolist()      # head from the bundle: seen
    assert loss_mask("auto", False, labels, 4) is None and loss_mask("all", True, labels, 4) is None
    with pytest.raises(ValueError, match="no labelled"):
        loss_mask("seen", True, np.array([-1, -1]), 4)
    torch.manual_seed(0)
    head = torch.nn.Linear(5, 4)
    x, y = torch.randn(6, 5), torch.tensor([0, 2, 2, 0, 2, 0])
    masked_cross_entropy(head(x), y, seen).backward()
    g = head.weight.grad.abs().sum(1)
    assert g[1] == 0 and g[3] == 0 and g[0] > 0 and g[2] > 0
    head.zero_grad()
    masked_cross_entropy(head(x), y, None).backward()                   # all classes: every row learns
    assert (head.weight.grad.abs().sum(1) > 0).all()


def _pc_imu_nce(har_pt: Path, base: Path, store: Path) -> float:
    """The pre-training's PC-IMU InfoNCE on every window of ``store``, between the point-cloud
    encoder of a `train har` checkpoint and the base bundle's IMU encoder (lower: more aligned)."""
    import torch

    from despite_core.data.store import Store
    from despite_core.losses import info_nce
    from despite_core.models.despite import DeSPITEConfig, DeSPITEModel
    from despite_core.train import checkpoint as ckpt
    from despite_core.train.data import WindowDataset, collate
    from despite_core.evaluate.embed import load_model
    from despite_core.runtime.inference import load_bundle
    from despite_core.train.har import encoder_config

    state = ckpt.load(har_pt, expect_kind="har")
    enc = DeSPITEModel(encoder_config(DeSPITEConfig.from_dict(state["model_config"]), "pointcloud")).encoders["pointcloud"]
    enc.load_state_dict({k[len("encoder."):]: v for k, v in state["model"].items() if k.startswith("encoder.")})
    # the reference: the base bundle's IMU encoder and temperature, as eval matching loads them
    bundle_model, bundle_state = load_model(str(base))
    imu, temperature = bundle_model.encoders["imu"], float(load_bundle(base).meta["temperature"])
    st = Store(store)
    ds = WindowDataset(st, st.sequence_ids, ("pointcloud", "imu"), stride=12, imu_layout=ckpt.imu_layout_of(bundle_state))
    batch = collate([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        return float(info_nce(enc.eval()(batch["pointcloud"])[1], imu(batch["imu"])[1], temperature))


def test_align_imu_keeps_a_fine_tuned_encoder_in_the_matching_space(stores, tmp_path):
    """--align-imu adds the pre-training's PC-IMU term to the labels' loss: the same fine-tune (seed,
    learning rates, a fast-moving encoder) leaves the point-cloud embedding better aligned to the IMU
    encoder's than without it, and better than the base's, on the windows it trained on."""
    base = _default_model()
    runs = {}
    for name, extra in (("plain", ()), ("aligned", ("--align-imu", "1"))):
        run("train", "har", "--init", base, "--modality", "pointcloud", "--head", "mlp", "--lr", "0.01",
            "--encoder-lr", "0.03", *extra, "--store", stores / "train", "--test-store", stores / "test",
            "--test-split", "all", "--train-split", "all", "--out", tmp_path / name, "--epochs", "3",
            "--batch-size", "8", "--stride", "6", "--eval-stride", "12", "--quiet")
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
        runs[name]["nce"] = _pc_imu_nce(tmp_path / name / "har.pt", base, stores / "train")
    assert runs["aligned"]["align_imu"] == 1.0 and "align_loss" in runs["aligned"]["log"][-1]
    assert runs["plain"]["align_imu"] == 0.0 and "align_loss" not in runs["plain"]["log"][-1]
    zero = fine_tune(stores, tmp_path / "zero", base, lr=0)                  # nothing moves: the base's encoder
    base_nce = _pc_imu_nce(tmp_path / "zero" / "har.pt", base, stores / "train")
    assert zero["init_head"] is True
    assert runs["aligned"]["nce"] < min(runs["plain"]["nce"], base_nce), (runs["aligned"]["nce"], runs["plain"]["nce"], base_nce)


def test_align_imu_refuses_what_it_cannot_do(stores, tmp_path):
    for extra, why in ((("--modality", "imu"), "--modality is imu"),
                       (("--modality", "pointcloud"), "needs --init"),
                       (("--modality", "pointcloud", "--init", _default_model(), "--freeze"), "no --freeze")):
        out = run("train", "har", "--store", stores / "train", "--out", tmp_path / "x", "--align-imu", "0.5", *extra,
                  "--epochs", "1", "--quiet", ok=False)
        assert out.returncode == 2 and why in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
