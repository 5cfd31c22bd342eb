"""Bundle v2's parts: a point-cloud head that also takes the window's body motion (what the per-frame
centring removes), and an IMU HAR model of its own (`imu_har`) beside the matching encoder. Each is
trained, exported from the shipped bundle, run through ONNX Runtime and recovered from the bundle."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.despite_cli import despite as run, store_pair, train_har
from helpers.editions import default_edition


def _default_model() -> Path:
    from despite_core.runtime.inference import default_bundle_path

    return default_bundle_path()


# ------------------------------------------------------------------------------------ the numbers

def test_body_motion_is_the_centroid_track_and_extents_with_gaps_filled():
    from despite_core.data.body_motion import body_motion, body_motion_dim, cloud_extent

    t = 6
    c = np.zeros((t, 3))
    c[:, 2] = [0.0, -0.1, -0.2, np.nan, -0.4, -0.4]      # sitting down; frame 3 unseen
    c[:, 0] = [0.0, 0.3, 0.6, np.nan, 0.6, 0.6]           # and travelling 0.6 m first
    e = np.tile([1.7, 0.5], (t, 1))
    e[3] = np.nan
    e[4] = [1.2, 0.6]
    m = body_motion(c, e)
    assert m.shape == (body_motion_dim(t),) == (24,) and m.dtype == np.float32
    dz, dist, h, w = m.reshape(4, t)
    # frame 3 takes the nearest observed frame (ties: the earlier, frame 2)
    np.testing.assert_allclose(dz, [0, -0.1, -0.2, -0.2, -0.4, -0.4], atol=1e-6)
    np.testing.assert_allclose(dist, [0, 0.3, 0.6, 0.6, 0.6, 0.6], atol=1e-6)
    np.testing.assert_allclose(h, [1.7, 1.7, 1.7, 1.7, 1.2, 1.7], atol=1e-6)
    np.testing.assert_allclose(w, [0.5, 0.5, 0.5, 0.5, 0.6, 0.5], atol=1e-6)
    # the first frame unseen: the window starts from the first observed one
    c2, e2 = c.copy(), e.copy()
    c2[0], e2[0] = np.nan, np.nan
    assert body_motion(c2, e2).reshape(4, t)[0, 1] == 0.0
    assert not body_motion(np.full((t, 3), np.nan), np.full((t, 2), np.nan)).any()
    with pytest.raises(ValueError, match="centroids"):
        body_motion(c[:, :2], e)
    pts = np.array([[1.0, 0.0, -1.0], [1.3, 0.4, 0.5], [np.nan, 0, 0]])
    np.testing.assert_allclose(cloud_extent(pts), [1.5, 0.5], atol=1e-6)
    assert np.isnan(cloud_extent(np.zeros((0, 3)))).all()


def test_the_store_and_the_live_buffers_give_the_same_body_motion():
    """One definition: a window's motion from the store's per-frame stats equals the one the track
    buffers build from the same clouds (the pipeline passes cloud_extent of the raw points)."""
    from despite_core.data.body_motion import body_motion, cloud_extent
    from despite_core.runtime.buffers import BufferConfig, TrackBuffers
    from despite_core.train.data import cloud_stats

    rng = np.random.default_rng(0)
    clouds = [rng.normal([3, 1, -0.5 - 0.02 * i], [0.2, 0.2, 0.5], (50 + i, 3)) for i in range(24)]
    for k in (5, 9, 10, 11):                     # a one-frame and a three-frame gap
        clouds[k] = np.zeros((0, 3))
    cent, stats = cloud_stats(clouds)
    want = body_motion(cent, stats[:, :2])
    buf = TrackBuffers(BufferConfig(fps=10.0, window=24, max_gap=5))
    for i, p in enumerate(clouds):
        obs = {} if not len(p) else {1: (np.zeros((4, 3)), p.mean(0), None, cloud_extent(p))}
        buf.push(int(i * 1e8), obs)
    w = buf.ready()
    assert len(w) == 1 and w[0].filled == 4
    np.testing.assert_allclose(body_motion(w[0].centroids, w[0].extents), want, atol=1e-5)


# ------------------------------------------------------------------------------------ trained and exported

@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return store_pair(tmp_path_factory.mktemp("v2"), (41, 42))



def test_a_body_motion_head_exports_runs_through_onnx_and_is_recovered(stores, tmp_path):
    import yaml

    from despite_core.runtime.inference import Runtime

    base = _default_model()
    m = train_har(stores, tmp_path / "r", "--init", base, "--fresh-head", "--modality", "pointcloud", "--freeze",
              "--head", "mlp", "--body-motion", "--lr", "0.05")
    assert m["body_motion"] == 96 and m["init_head"] is False
    run("export", "--base-model", base, "--har", tmp_path / "r" / "har.pt", "--store", stores / "train",
        "--out", tmp_path / "b")
    meta = yaml.safe_load((tmp_path / "b" / "model.yaml").read_text())
    base_meta = yaml.safe_load((base / "model.yaml").read_text())
    head = meta["parts"]["pointcloud_head"]
    assert [t["name"] for t in head["inputs"]] == ["features", "body_motion"]
    assert head["inputs"][1]["shape"] == [None, 96]
    assert meta["parts"]["pointcloud_encoder"]["sha256"] == base_meta["parts"]["pointcloud_encoder"]["sha256"]
    # ONNX Runtime labels the test windows as PyTorch did (their body motion fed by eval har)
    run("eval", "har", "--model", tmp_path / "b", "--store", stores / "test", "--split", "all", "--stride", "4",
        "--out", tmp_path / "e", "--quiet")
    onnx = json.loads((tmp_path / "e" / "har.json").read_text())
    assert onnx["windows"] == m["test"]["windows"] > 20
    assert onnx["accuracy"] == pytest.approx(m["test"]["accuracy"], abs=1.5 / onnx["windows"])
    rt = Runtime(tmp_path / "b", threads=1)
    assert rt.needs_body_motion("pointcloud") and not rt.needs_body_motion("imu")
    f = np.zeros((2, 80), np.float32)
    with pytest.raises(ValueError, match="body_motion"):
        rt.classify("pointcloud", f)
    # the motion changes the scores: a head that ignored it would give equal rows
    mo = np.zeros((2, 96), np.float32)
    mo[1, :24] = -0.5                                               # the second window's body drops half a metre
    p = rt.classify("pointcloud", f, mo)
    assert np.abs(p[0] - p[1]).max() > 1e-4
    # recovered from the bundle: train har --init NEW at lr 0 brings the motion head along, unchanged
    r0 = train_har(stores, tmp_path / "r0", "--init", tmp_path / "b", "--modality", "pointcloud", "--freeze",
               "--head", "mlp", "--lr", "0")
    assert r0["init_head"] is True and r0["body_motion"] == 96
    assert r0["test"]["accuracy"] == pytest.approx(onnx["accuracy"], abs=1.5 / onnx["windows"])
    # --fresh-head: the bundle's encoders only (how bench/default_model_v2.sh trains reproducibly)
    r1 = train_har(stores, tmp_path / "r1", "--init", tmp_path / "b", "--modality", "pointcloud", "--freeze",
               "--head", "mlp", "--lr", "0", "--fresh-head")
    assert r1["init_head"] is False and r1["body_motion"] == 0


def test_the_live_pipeline_feeds_the_body_motion_head(stores, tmp_path):
    """HarPipeline with a body-motion head: each window's scores are the head's on the window's own
    motion from the raw clouds (ground-truth segmentation of a simulated scene's full scans)."""
    from despite_core.data.body_motion import body_motion
    from despite_core.data.synth.lidar import LidarConfig
    from despite_core.data.synth.world import WorldConfig, build_scene, iter_scans
    from despite_core.runtime.inference import Runtime
    from despite_core.runtime.pipeline import HarPipeline

    base = _default_model()
    train_har(stores, tmp_path / "r", "--init", base, "--fresh-head", "--modality", "pointcloud", "--freeze",
          "--head", "mlp", "--body-motion", "--lr", "0.05")
    run("export", "--base-model", base, "--har", tmp_path / "r" / "har.pt", "--store", stores / "train",
        "--out", tmp_path / "b")
    rt = Runtime(tmp_path / "b", threads=1)
    pipe = HarPipeline(rt, stride=6, fusion=None)
    fed = []
    orig = rt.classify

    def spy(modality, features, body_motion=None):
        fed.append(body_motion)
        return orig(modality, features, body_motion)

    rt.classify = spy
    cfg = WorldConfig(minutes=0.1, scene_minutes=0.1, people=2, seed=5, lidar=LidarConfig(beams=16, columns=512))
    checked = 0
    for scan in iter_scans(build_scene(cfg, 0, 4.0), full=True, noise_scale=1.0):
        out = pipe.process_ground_truth(scan.xyz, int(round(scan.stamp * 1e9)), scan.gt_person)
        if not out.results:
            continue
        windows = pipe.buffers.ready()                    # the windows that were just inferred, in order
        assert [w.track_id for w in windows] == [r.track_id for r in out.results]
        want = np.stack([body_motion(w.centroids, w.extents) for w in windows])
        np.testing.assert_allclose(fed[-1], want, atol=1e-6)
        assert np.isfinite(want).all() and (want[:, 48:72] > 0.3).all()     # a person's height, not zeros
        checked += len(windows)
    assert checked >= 2


def test_an_imu_har_part_labels_beside_the_unchanged_matching_encoder(stores, tmp_path):
    import yaml

    from despite_core.runtime.inference import Runtime
    from despite_core.runtime.pipeline import WearerMatcher

    base = _default_model()
    m = train_har(stores, tmp_path / "r", "--modality", "imu", "--lr", "0.03")          # from scratch
    run("export", "--base-model", base, "--har", tmp_path / "r" / "har.pt", "--store", stores / "train",
        "--out", tmp_path / "b", "--har-part")
    meta = yaml.safe_load((tmp_path / "b" / "model.yaml").read_text())
    base_meta = yaml.safe_load((base / "model.yaml").read_text())
    for name, part in base_meta["parts"].items():             # every base part kept as it was, imu_har replaced
        if name != "imu_har":
            assert meta["parts"][name]["sha256"] == part["sha256"], name
    har = meta["parts"]["imu_har"]
    assert har["sha256"] != base_meta["parts"].get("imu_har", {}).get("sha256")
    assert [t["name"] for t in har["inputs"]] == ["imu"] and har["outputs"][0]["shape"] == [None, len(meta["class_names"])]
    assert meta["metrics"]["imu_har"]["frozen_encoder"] is False
    run("eval", "har", "--model", tmp_path / "b", "--store", stores / "test", "--split", "all", "--stride", "4",
        "--modality", "imu", "--out", tmp_path / "e", "--quiet")
    onnx = json.loads((tmp_path / "e" / "har.json").read_text())
    assert onnx["windows"] == m["test"]["windows"]
    assert onnx["accuracy"] == pytest.approx(m["test"]["accuracy"], abs=1.5 / onnx["windows"])
    # the matcher labels wearers with imu_har, not with the frozen encoder's head
    rt = Runtime(tmp_path / "b", threads=1)
    x = np.random.default_rng(0).normal(size=(3, 24, 48)).astype(np.float32)
    np.testing.assert_allclose(rt.scores("imu", x), rt.recognise("imu", x))
    if rt.has("imu_head"):
        assert not np.allclose(rt.scores("imu", x), rt.classify("imu", rt.encode("imu", x)[0]))
    matcher = WearerMatcher(rt, ["a"])
    for k in range(24):                                  # one wearer's IMU stream, 2.4 s at the model rate
        for site in rt.bundle.imu_layout.sites:
            v = np.array([1.0, 0, 0, 0, 0.1 * k, 0, 0, 0, 0, 9.81])
            assert matcher.wearers["a"].push(site, int(k * 1e8), v) == "ok"
    stamps = np.arange(24, dtype=np.int64) * int(1e8)
    res = matcher.match(stamps, [], np.zeros((0, 512), np.float32))
    window, why = matcher.wearers["a"].window(stamps)
    assert why == "" and res.missing == {}
    np.testing.assert_allclose(res.imu_labels["a"][3], rt.recognise("imu", window[None])[0], atol=1e-6)
    # a point-cloud model is refused as a part (the live labels come from the streaming features)
    train_har(stores, tmp_path / "pc", "--init", base, "--modality", "pointcloud", "--head", "mlp", "--lr", "0.01")
    out = run("export", "--base-model", base, "--har", tmp_path / "pc" / "har.pt", "--store", stores / "train",
              "--out", tmp_path / "x", "--har-part", ok=False)
    assert out.returncode == 2 and "--har-part exports IMU" in out.stderr
    out = run("export", "--checkpoint", "x.pt", "--store", stores / "train", "--out", tmp_path / "y", "--har-part", ok=False)
    assert out.returncode == 2 and "give --base-model" in out.stderr


def test_an_export_onto_other_classes_drops_the_base_labellers_it_did_not_replace(tmp_path):
    """A store of the other world edition (15 classes vs 18): the IMU model becomes imu_har, and every
    base head or HAR part trained on the base's classes is dropped, so the bundle verifies."""
    import yaml

    from despite_core.runtime.inference import Runtime

    base = _default_model()
    other = 2 if default_edition() == 1 else 1
    run("synth", "--out", tmp_path / "s", "--minutes", "0.25", "--people", "2", "--seed", "43", "--lidar-beams", "16",
        "--edition", other, "--quiet")
    run("train", "har", "--store", tmp_path / "s", "--train-split", "all", "--test-split", "all", "--out", tmp_path / "r",
        "--modality", "imu", "--epochs", "1", "--batch-size", "8", "--stride", "12", "--eval-stride", "4", "--quiet")
    out = run("export", "--base-model", base, "--har", tmp_path / "r" / "har.pt", "--store", tmp_path / "s",
              "--out", tmp_path / "b", "--har-part")
    notes = json.loads(out.stdout)["notes"]
    meta = yaml.safe_load((tmp_path / "b" / "model.yaml").read_text())
    labellers = sorted(n for n in meta["parts"] if n.endswith(("_head", "_har")))
    assert labellers == ["imu_har"], labellers
    assert any("pointcloud_head dropped" in n for n in notes), notes
    assert not any(k.startswith("pointcloud_har") for k in meta["metrics"]), meta["metrics"].keys()
    rt = Runtime(tmp_path / "b", threads=1)
    assert rt.bundle.class_names == yaml.safe_load((tmp_path / "s" / "meta.json").read_text())["class_names"]
