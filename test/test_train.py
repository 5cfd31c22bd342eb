"""Training end to end on a tiny synthetic store: training that learns (the loss falls by a stated
factor, weights move, a HAR head beats chance by a stated margin), resume that takes exactly the
uninterrupted run's steps, checkpoint errors, and a real 2-process torchrun (gloo) run whose ranks
take identical, non-zero steps."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from despite_core.train import checkpoint as ckpt
from despite_core.train.pretrain import main as pretrain_main


def args(store, out, *extra):
    return ["--store", str(store), "--out", str(out), "--batch-size", "8", "--stride", "6", "--max-windows", "16",
            "--small", "--quiet", "--checkpoint-every", "1", *extra]


def test_pretrain_smoke_16_windows_end_to_end(tiny_store, tmp_path):
    assert pretrain_main(args(tiny_store, tmp_path / "run", "--preset", "DeSPITE", "--epochs", "2")) == 0
    log = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert set(log[0]) >= {"loss", "skeleton-text", "pointcloud-imu", "windows_per_s", "val_loss"}
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["train"]["windows"] == 16
    state = ckpt.load(tmp_path / "run" / "last.pt", expect_kind="pretrain")
    assert state["epoch"] == 2 and state["model_config"]["preset"] == "DeSPITE"
    assert any(k.startswith("encoders.pointcloud.tube") for k in state["model"])


def read_log(run: Path) -> list[dict]:
    return [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]


def test_pretraining_learns(tiny_store, tmp_path):
    """16 windows memorised: at lr 1e-3 the mean contrastive loss of the last 5 of 40 epochs is under
    0.7 of the first epoch's (measured 0.43; the augmentations make single epochs noisy, hence the
    mean; without a working optimiser step or gradient it stays at 0.95-1.0), and every epoch moves
    the weights."""
    run = tmp_path / "run"
    assert pretrain_main(args(tiny_store, run, "--preset", "DeSPIE", "--epochs", "40", "--lr", "1e-3",
                              "--checkpoint-every", "40")) == 0
    log = read_log(run)
    losses = [r["loss"] for r in log]
    assert np.mean(losses[-5:]) < 0.7 * losses[0], losses
    assert all(r["update_norm"] > 1e-3 for r in log), [r["update_norm"] for r in log]
    # the checkpoint holds the trained weights: a model built from it gives the last epoch's state
    state = ckpt.load(run / "last.pt", expect_kind="pretrain")
    assert state["epoch"] == 40


def test_resume_takes_the_uninterrupted_runs_steps(tiny_store, tmp_path):
    """1 epoch, stop, resume to 3 == 3 epochs in one go: the same losses and the same weights
    (every epoch's randomness follows (seed, epoch); weights and optimiser state are restored)."""
    a, b = tmp_path / "a", tmp_path / "b"
    pretrain_main(args(tiny_store, a, "--preset", "DeSPIE", "--epochs", "3", "--lr", "1e-3"))
    pretrain_main(args(tiny_store, b, "--preset", "DeSPIE", "--epochs", "1", "--lr", "1e-3"))
    pretrain_main(args(tiny_store, b, "--preset", "DeSPIE", "--epochs", "3", "--lr", "1e-3", "--resume"))
    la, lb = read_log(a), read_log(b)
    assert [r["epoch"] for r in lb] == [1, 2, 3]
    for ra, rb in zip(la, lb):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-4, abs=1e-5), (la, lb)
    sa, sb = (ckpt.load(d / "last.pt", expect_kind="pretrain") for d in (a, b))
    for k, v in sa["model"].items():
        assert torch.allclose(v, sb["model"][k], atol=1e-5), k
    with pytest.raises(ValueError, match="model configuration differs"):
        pretrain_main(args(tiny_store, b, "--preset", "DePIE", "--epochs", "4", "--resume"))


def test_har_head_learns(tiny_store, tmp_path):
    """IMU HAR from scratch, scored on the windows it trained on (a learning check, not a
    generalisation figure): in 40 epochs the loss falls below 0.2 of its first epoch (measured 0.03)
    and the accuracy beats the majority class share by at least 0.4 (measured 1.0 against 0.42)."""
    from despite_core.cli import main
    from despite_core.data.store import Store

    out = tmp_path / "har"
    assert main(["train", "har", "--store", str(tiny_store), "--out", str(out), "--modality", "imu", "--small",
                 "--epochs", "40", "--stride", "6", "--eval-stride", "6", "--test-split", "train", "--lr", "0.05",
                 "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    losses = [r["loss"] for r in m["log"]]
    assert losses[-1] < 0.2 * losses[0], losses
    counts = np.array(m["test"]["confusion"]).sum(1)
    chance = counts.max() / counts.sum()
    assert m["test"]["accuracy"] >= chance + 0.4, (m["test"]["accuracy"], chance)
    assert len(Store(tiny_store).class_names) == len(counts)


def test_har_resume_takes_the_uninterrupted_runs_steps(tiny_store, tmp_path, monkeypatch):
    """train har killed right after epoch 1's last.pt, then --resume == 3 epochs in one go: the same
    per-epoch log (losses, validation scores) and the same weights; curves.png and log.jsonl are
    written; --resume with other options, or with nothing to resume, is refused."""
    from despite_core.cli import main
    from despite_core.train import har

    def cmd(out, *extra):
        # the MLP head's dropout draws from torch's RNG: the resumed run must restore it too
        return ["train", "har", "--store", str(tiny_store), "--out", str(out), "--modality", "imu", "--small",
                "--head", "mlp", "--epochs", "3", "--stride", "6", "--eval-stride", "6", "--lr", "0.05",
                "--quiet", *extra]
    a, b, n = tmp_path / "a", tmp_path / "b", tmp_path / "n"
    a_cmd = cmd(a, "--val-split", "train")
    assert main(a_cmd) == 0
    assert main(cmd(n, "--val-split", "")) == 0                            # no validation: the same training steps
    save = ckpt.save

    def save_then_die(state, path):
        save(state, path)
        if state["kind"] == "har_resume" and state["epoch"] == 1:
            raise KeyboardInterrupt                        # as a kill right after the first epoch's checkpoint
    monkeypatch.setattr(har.ckpt, "save", save_then_die)
    assert main(cmd(b, "--val-split", "train")) == 130                      # "interrupted"
    monkeypatch.setattr(har.ckpt, "save", save)
    assert not (b / "har.pt").exists() and len(read_log(b)) == 1
    assert main(cmd(b, "--val-split", "train", "--resume")) == 0
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert [r["epoch"] for r in mb["log"]] == [1, 2, 3] and read_log(b) == mb["log"]
    for ra, rb in zip(ma["log"], mb["log"]):
        assert {k: v for k, v in rb.items() if k != "seconds"} == pytest.approx(
            {k: v for k, v in ra.items() if k != "seconds"}, rel=1e-4, abs=1e-5), (ma["log"], mb["log"])
    assert {"val_accuracy", "val_macro_f1"} <= set(mb["log"][0])
    sa, sb, sn = (ckpt.load(d / "har.pt", expect_kind="har") for d in (a, b, n))
    for k, v in sa["model"].items():
        assert torch.allclose(v, sb["model"][k], atol=1e-5), k
        assert torch.equal(v, sn["model"][k]), k                           # validating moved no training step
    assert "val_accuracy" not in read_log(n)[0]
    assert (b / "curves.png").stat().st_size > 1000
    assert main(cmd(b, "--val-split", "train", "--resume", "--lr", "0.01")) == 2      # other options
    assert main(cmd(tmp_path / "c", "--resume")) == 2                       # nothing to resume


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.load(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="not a readable checkpoint"):
        ckpt.load(tmp_path / "bad.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a despite checkpoint"):
        ckpt.load(tmp_path / "other.pt")


def test_cli_errors(tiny_store, tmp_path):
    from despite_core.cli import main

    assert main(["train", "pretrain", "--list-presets"]) == 0
    assert main(["train", "pretrain", "--store", str(tiny_store), "--out", str(tmp_path / "r"),
                 "--batch-size", "100000", "--epochs", "1", "--small", "--quiet"]) == 2


def test_torchrun_two_processes_stay_in_sync(tiny_store, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # `python -m torch.distributed.run` is torchrun, without assuming where pip put the script
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", "-m", "despite_core.train.pretrain",
                          *args(tiny_store, tmp_path / "ddp", "--preset", "DeSPIE", "--epochs", "2")],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    log = read_log(tmp_path / "ddp")
    assert all(r["world_size"] == 2 and r["ranks_in_sync"] for r in log)
    # every rank stepped, and by the same amount (identical gradients after the all-reduce)
    for r in log:
        n0, n1 = r["rank_update_norms"]
        assert n0 > 1e-4 and n1 == pytest.approx(n0, rel=1e-5), r


def test_train_har_and_eval_commands_end_to_end(tiny_store, tmp_path):
    from despite_core.cli import main

    run = tmp_path / "pre"
    assert pretrain_main(args(tiny_store, run, "--preset", "DeSPIE", "--epochs", "1")) == 0
    ev = tmp_path / "ev"
    assert main(["eval", "matching", "--checkpoint", str(run / "last.pt"), "--store", str(tiny_store), "--out", str(ev),
                 "--scenes", "20", "--sizes", "2,4", "--windows", "1,2", "--quiet"]) == 0
    res = json.loads((ev / "matching.json").read_text())
    assert set(res["pairs"]) == {"imu->skeleton", "imu->pointcloud", "skeleton->imu", "skeleton->pointcloud",
                                 "pointcloud->imu", "pointcloud->skeleton"}
    assert 0 <= res["pairs"]["imu->pointcloud"]["all"]["w1"]["N4"]["accuracy"] <= 1
    assert (ev / "matching.png").stat().st_size > 1000
    assert main(["eval", "retrieval", "--checkpoint", str(run / "last.pt"), "--store", str(tiny_store), "--out", str(ev),
                 "--quiet"]) == 0
    assert "recall@1_pm2" in json.loads((ev / "retrieval.json").read_text())["skeleton->imu"]
    har = tmp_path / "har"
    assert main(["train", "har", "--store", str(tiny_store), "--out", str(har), "--init", str(run / "last.pt"),
                 "--epochs", "1", "--stride", "6", "--eval-stride", "6", "--label-fraction", "0.5", "--quiet"]) == 0
    m = json.loads((har / "metrics.json").read_text())
    assert m["init"].endswith("last.pt") and 0 <= m["test"]["accuracy"] <= 1 and (har / "confusion.png").is_file()
    assert main(["eval", "har", "--checkpoint", str(har / "har.pt"), "--store", str(tiny_store), "--out", str(ev),
                 "--stride", "6", "--quiet"]) == 0
    got = json.loads((ev / "har.json").read_text())
    assert got["accuracy"] == pytest.approx(m["test"]["accuracy"])   # the checkpoint reproduces the run's figure
    # A pre-training checkpoint is not a HAR checkpoint: a clear error, exit 2.
    assert main(["eval", "har", "--checkpoint", str(run / "last.pt"), "--store", str(tiny_store), "--out", str(ev)]) == 2


def test_export_bundle_with_a_linear_probe_head(tiny_store, tmp_path):
    import onnxruntime as ort
    import yaml

    from despite_core.cli import main
    from despite_core.export import sha256

    run = tmp_path / "pre"
    assert pretrain_main(args(tiny_store, run, "--preset", "DeSPITE", "--epochs", "1")) == 0
    probe, tuned = tmp_path / "probe", tmp_path / "tuned"
    common = ["train", "har", "--store", str(tiny_store), "--init", str(run / "last.pt"), "--epochs", "1",
              "--stride", "6", "--eval-stride", "12", "--quiet"]
    assert main([*common, "--out", str(probe), "--freeze", "--head", "mlp"]) == 0   # the reference's small MLP
    assert main([*common, "--out", str(tuned)]) == 0
    bundle = tmp_path / "bundle"
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--store", str(tiny_store), "--out", str(bundle),
                 "--har", str(probe / "har.pt"), "--text-queries", "walk = a person walks; walk = walking; wave", "--streaming"]) == 0
    meta = yaml.safe_load((bundle / "model.yaml").read_text())
    for key in ("format_version", "model_id", "preset", "class_names", "fps", "window", "points_per_frame",
                "normalisation", "imu_layout", "embedding_dim", "temperature", "parts", "text_queries", "provenance", "metrics"):
        assert key in meta, key
    assert set(meta["parts"]) == {"pointcloud_encoder", "imu_encoder", "pointcloud_head", "pointcloud_tube", "pointcloud_window"}
    assert meta["provenance"]["parity"]["pointcloud_streaming"]["max_abs_diff_embedding_vs_monolithic"] < 1e-4
    for part in meta["parts"].values():
        assert sha256(bundle / part["file"]) == part["sha256"]
    assert meta["parts"]["pointcloud_encoder"]["inputs"] == [{"name": "points", "shape": [None, 24, 256, 3]}]
    assert meta["parts"]["imu_encoder"]["inputs"] == [{"name": "imu", "shape": [None, 24, 48]}]
    assert len(meta["text_queries"]["embeddings"][0]) == 512
    assert meta["text_queries"]["labels"] == ["walk", "walk", "wave"]
    assert meta["text_queries"]["phrases"] == ["a person walks", "walking", "wave"]
    # The exported encoder + head run in ONNX Runtime at yet another batch size.
    enc = ort.InferenceSession(str(bundle / "pointcloud_encoder.onnx"), providers=["CPUExecutionProvider"])
    head = ort.InferenceSession(str(bundle / "pointcloud_head.onnx"), providers=["CPUExecutionProvider"])
    feats, emb = enc.run(None, {"points": np.random.default_rng(0).normal(size=(5, 24, 256, 3)).astype(np.float32) * 0.3})
    assert emb.shape == (5, 512) and head.run(None, {"features": feats})[0].shape == (5, 15)
    # Streaming through the runtime: tubes per frame, then the window part, equal the monolith.
    from despite_core.runtime.inference import Runtime

    rt = Runtime(bundle)
    x = np.random.default_rng(1).normal(size=(2, 24, 256, 3)).astype(np.float32) * 0.3
    tubes = [rt.tube(x[:, max(2 * l - 1, 0)], x[:, 2 * l], x[:, 2 * l + 1]) for l in range(12)]
    _, e_stream = rt.window_from_tubes(np.stack([a for a, _ in tubes], 1), np.stack([t for _, t in tubes], 1))
    assert np.abs(e_stream - rt.encode("pointcloud", x)[1]).max() < 1e-4
    # Open vocabulary: probabilities per distinct label (phrases sharing a label summed).
    vocab, probs = rt.zero_shot(rt.encode("pointcloud", x)[1])
    assert vocab == ["walk", "wave"] and probs.shape == (2, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    ev = tmp_path / "zs"
    assert main(["eval", "har", "--model", str(bundle), "--store", str(tiny_store), "--out", str(ev), "--zero-shot",
                 "--stride", "12", "--write-metrics", "--quiet"]) == 0
    zs = json.loads((ev / "har.json").read_text())
    assert zs["kind"] == "zero_shot" and 0 <= zs["accuracy"] <= 1
    written = yaml.safe_load((bundle / "model.yaml").read_text())["metrics"]["pointcloud_zero_shot"]
    assert written["accuracy"] == round(zs["accuracy"], 4) and written["windows"] == zs["windows"]
    Runtime(bundle)                         # metrics are outside every hash: the bundle still verifies
    # A head trained on a fine-tuned encoder cannot share the bundle's encoder: a clear error.
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--store", str(tiny_store), "--out", str(tmp_path / "b2"),
                 "--har", str(tuned / "har.pt")]) == 2


def test_runtime_loads_verifies_and_matches_the_checkpoint(tiny_store, tmp_path):
    import yaml

    from despite_core.cli import main
    from despite_core.runtime.inference import BundleError, Runtime, load_bundle

    run, probe, bundle = tmp_path / "pre", tmp_path / "probe", tmp_path / "bundle"
    assert pretrain_main(args(tiny_store, run, "--preset", "DeSPIE", "--epochs", "1")) == 0
    assert main(["train", "har", "--store", str(tiny_store), "--init", str(run / "last.pt"), "--epochs", "1",
                 "--stride", "6", "--eval-stride", "12", "--quiet", "--out", str(probe), "--freeze"]) == 0
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--store", str(tiny_store), "--out", str(bundle),
                 "--har", str(probe / "har.pt")]) == 0
    rt = Runtime(bundle, providers="cpu")
    assert rt.provider == "CPUExecutionProvider" and rt.has("pointcloud_head")
    # eval har through the runtime gives the checkpoint's figures on the same windows.
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["eval", "har", "--checkpoint", str(probe / "har.pt"), "--store", str(tiny_store), "--out", str(a),
                 "--stride", "4", "--quiet"]) == 0
    assert main(["eval", "har", "--model", str(bundle), "--store", str(tiny_store), "--out", str(b),
                 "--stride", "4", "--quiet"]) == 0
    ja, jb = (json.loads((d / "har.json").read_text()) for d in (a, b))
    assert jb["provider"] == "CPUExecutionProvider"
    assert ja["confusion"] == jb["confusion"]
    # Corrupt, missing and mismatched bundles: clear errors naming the file.
    with pytest.raises(BundleError, match="model bundle metadata not found"):
        load_bundle(tmp_path)
    meta = yaml.safe_load((bundle / "model.yaml").read_text())
    bad = dict(meta, parts={**meta["parts"], "imu_encoder": {**meta["parts"]["imu_encoder"],
                                                            "inputs": [{"name": "imu", "shape": [None, 24, 60]}]}})
    (bundle / "model.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(BundleError, match=r"imu_encoder.onnx: input 'imu' has shape \['batch', 24, 48\], model.yaml says \[None, 24, 60\]"):
        Runtime(bundle)
    (bundle / "model.yaml").write_text(yaml.safe_dump(meta))
    with (bundle / "imu_encoder.onnx").open("r+b") as f:
        f.seek(100)
        f.write(b"\\x00\\x01\\x02")
    with pytest.raises(BundleError, match=r"imu_encoder.onnx: sha256 .* does not match model.yaml"):
        load_bundle(bundle)


def test_streaming_encoder_caches_tubes_per_track_and_matches_the_monolith(tiny_store, tmp_path):
    from despite_core.cli import main
    from despite_core.runtime.inference import BundleError, Runtime, StreamingPointEncoder, TrackWindow

    run, bundle = tmp_path / "pre", tmp_path / "bundle"
    assert pretrain_main(args(tiny_store, run, "--preset", "DePIE", "--epochs", "1")) == 0
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--store", str(tiny_store), "--out", str(bundle),
                 "--parts", "pointcloud", "--streaming"]) == 0
    rt = Runtime(bundle, providers="cpu", threads=1)
    enc = StreamingPointEncoder(rt)
    rng = np.random.default_rng(3)
    frames = {k: rng.normal(size=(60, 256, 3)).astype(np.float32) * 0.3 for k in (7, 9)}   # two tracks
    stamps = np.arange(60, dtype=np.int64) * 100_000_000                                 # 10 Hz, ns

    def window(tid, start, st=stamps):
        return TrackWindow(tid, st[start:start + 24], frames[tid][start:start + 24])

    # Slide by 1 frame, then by 3, with both tracks batched in one call: the monolith's numbers each time.
    starts = [0, 1, 2, 3, 6, 9, 12]
    for s in starts:
        ws = [window(7, s), window(9, s + 2)]
        _, e = enc.encode(ws)
        mono = rt.encode("pointcloud", np.stack([w.points for w in ws]))[1]
        assert np.abs(e - mono).max() < 1e-4, s
    # First call: 12 tubes per track; afterwards one new tube per new frame plus the first tube of each window.
    assert enc.tubes_computed < 2 * 12 * len(starts) / 2 and enc.tubes_reused > enc.tubes_computed
    assert enc.cached_tubes <= 2 * 24
    # A track whose stamps jump back (a bag looping) must not reuse tubes of other frames.
    looped = stamps.copy()
    looped[30:] = looped[:30]
    frames[7][30:] = rng.normal(size=(30, 256, 3)).astype(np.float32) * 0.3
    w = window(7, 30, looped)
    assert np.abs(enc.encode([w])[1] - rt.encode("pointcloud", w.points[None])[1]).max() < 1e-4
    with pytest.raises(ValueError, match="one window per track"):
        enc.encode([window(9, 0), window(9, 1)])
    mono_only = tmp_path / "mono"
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--store", str(tiny_store), "--out", str(mono_only),
                 "--parts", "pointcloud"]) == 0
    with pytest.raises(BundleError, match="export the bundle with --streaming"):
        StreamingPointEncoder(Runtime(mono_only))
    # despite bench inference on this bundle: every engine and batch measured, ratios from the same run.
    out = tmp_path / "bench.json"
    assert main(["bench", "inference", "--model", str(bundle), "--repeats", "2", "--threads", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    got = {(r["engine"], r["batch"]) for r in res["rows"]}
    assert got == {(e, b) for e in ("torch eager", "ORT monolithic", "ORT streaming") for b in (1, 8)}
    assert all(r["median_ms"] > 0 and r["p95_ms"] >= r["median_ms"] for r in res["rows"])
    assert "pointcloud torch / ORT monolithic, batch 8" in res["ratios"]


def test_runtime_imports_without_torch():
    code = ("import sys\nsys.modules['torch'] = None\nsys.modules['rclpy'] = None\n"
            "import despite_core.runtime.inference, despite_core.runtime.perception, despite_core.runtime.buffers\n"
            "import despite_core.runtime.pipeline, despite_core.runtime.scoring, despite_core.runtime.bundle\n"
            "import despite_core.data.rosbag, despite_core.data.windows\nprint('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
