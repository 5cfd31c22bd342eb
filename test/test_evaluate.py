"""Evaluation protocols on embeddings whose answers are known, HAR metrics by hand, and the
eval/train CLIs end to end on a tiny store."""

import numpy as np
import pytest

from despite_core.evaluate.embed import Embedded
from despite_core.evaluate.har import har_metrics, segment_ids
from despite_core.evaluate.matching import MatchingConfig, _entries, evaluate_matching
from despite_core.evaluate.retrieval import evaluate_retrieval


def fake_embedded(noise=0.0, seqs=6, windows=40, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(seqs * windows, dim))
    emb = {}
    for m in ("pointcloud", "imu", "skeleton"):
        e = base + noise * rng.normal(size=base.shape)
        emb[m] = e / np.linalg.norm(e, axis=1, keepdims=True)
    seq = np.repeat(np.arange(seqs), windows)
    start = np.tile(np.arange(windows), seqs)
    labels = np.tile(np.repeat([0, 1], windows // 2), seqs)
    short = {m: rng.normal(size=(seqs * windows, 4 if m != "imu" else 5)) for m in ("pointcloud", "imu", "skeleton")}
    return Embedded(emb, seq, start, labels, [f"s{i}" for i in range(seqs)], short)


def test_entries_respect_sequences_and_labels():
    e = fake_embedded(seqs=2, windows=6)
    assert _entries(e, 1).tolist() == list(range(12))
    assert _entries(e, 4).tolist() == [0, 1, 2, 6, 7, 8]       # never across a sequence boundary
    assert _entries(e, 2, label=1).tolist() == [3, 4, 9, 10]


def test_matching_perfect_and_chance():
    cfg = MatchingConfig(sizes=(4, 16), windows=(1, 2), scenes=200, seed=1)
    perfect = evaluate_matching(fake_embedded(0.0), cfg, progress=False)
    for pair, r in perfect["pairs"].items():
        assert r["all"]["w1"]["N16"]["accuracy"] == 1.0
        assert r["same_activity"]["w2"]["N4"]["accuracy"] == 1.0
    rng = np.random.default_rng(5)
    rand = fake_embedded(0.0)
    rand.embeddings["imu"] = rng.normal(size=rand.embeddings["imu"].shape)
    res = evaluate_matching(rand, cfg, progress=False)
    acc = res["pairs"]["imu->skeleton"]["all"]["w1"]["N16"]["accuracy"]
    assert abs(acc - 1 / 16) < 0.03        # chance
    # Noise lowers accuracy and more windows per entry recover some of it.
    noisy = evaluate_matching(fake_embedded(1.5), cfg, progress=False)["pairs"]["imu->pointcloud"]["all"]
    assert noisy["w2"]["N16"]["accuracy"] > noisy["w1"]["N16"]["accuracy"]
    assert 0.0 <= noisy["w1"]["N16"]["shortcut"] <= 1.0


def test_retrieval_exact_and_tolerance():
    res = evaluate_retrieval(fake_embedded(0.0))
    r = res["pointcloud->imu"]
    assert r["recall@1_pm0"] == 1.0 and r["median_rank"] == 1.0 and r["queries"] == 240
    shifted = fake_embedded(0.0)
    # Target windows shifted by 2 frames within each sequence: exact recall drops, +-2 recovers.
    imu = shifted.embeddings["imu"].reshape(6, 40, -1)
    shifted.embeddings["imu"] = np.roll(imu, 2, axis=1).reshape(240, -1)
    r = evaluate_retrieval(shifted)["pointcloud->imu"]
    assert r["recall@1_pm0"] < 0.1 and r["recall@1_pm2"] > 0.9


def test_har_metrics_by_hand():
    scores = np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.6, 0.4, 0], [0.1, 0.9, 0], [0.5, 0.5, 0]])
    labels = np.array([0, 1, 1, 1, -1])
    m = har_metrics(scores, labels, ["a", "b", "c"], groups=np.array([0, 1, 1, 1, 1]))
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["ambiguous"] == 1 and m["windows"] == 4
    assert m["per_class_recall"] == {"a": 1.0, "b": pytest.approx(2 / 3)}
    # F1: a: p=1/2, r=1 -> 2/3; b: p=1, r=2/3 -> 0.8
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert m["confusion"] == [[1, 0, 0], [1, 2, 0], [0, 0, 0]]
    assert m["group_accuracy"] == 1.0  # group 1: summed scores favour b
    assert segment_ids(np.array([0, 0, 0, 1, 1]), np.array([2, 2, 3, 3, 3])).tolist() == [0, 0, 1, 2, 2]


def test_eval_perception_scores_a_scene_against_ground_truth_and_the_replaced_perception(tmp_path):
    """`despite eval perception` end to end on one short in-place scene, and the same scene with the
    perception of the revision before this one (people in place from the first scan: it missed much)."""
    import json

    from despite_core.cli import main

    out = tmp_path / "p.json"
    assert main(["eval", "perception", "--seeds", "7", "--seconds", "8", "--types", "in place", "--quiet",
                 "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    row = res["scenes"][0]
    assert row["type"] == "in place" and row["truth_windows"] > 0
    assert row["coverage"] > 0.9 and row["false_tracks"] == 0
    assert sum(v["scans"] for v in res["detected_by_points"].values()) == 2 * 80     # 2 people x 80 scans
    assert res["types"]["all"]["coverage"] == row["coverage"]
    base = tmp_path / "b.json"
    assert main(["eval", "perception", "--seeds", "7", "--seconds", "8", "--types", "in place", "--quiet",
                 "--baseline", "cea979b", "--out", str(base)]) == 0
    # the replaced perception learned still people into the background (0.63 here, deterministic)
    assert json.loads(base.read_text())["scenes"][0]["coverage"] <= row["coverage"] - 0.2
    assert main(["eval", "perception", "--types", "nowhere", "--quiet"]) == 2           # a clear error
