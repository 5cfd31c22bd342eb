"""The accuracy waterfall: its joint features, its classifier, and that every stage scores the same windows."""
import json

import numpy as np
import pytest
from helpers.editions import default_edition

from despite_core.cli import main
from despite_core.data.rotations import rot_z
from despite_core.data.synth.generate import generate
from despite_core.data.synth.lidar import LidarConfig
from despite_core.data.synth.world import WorldConfig
from despite_core.evaluate.perception import world_config
from despite_core.evaluate.waterfall import FeatureClassifier, joint_features, scene_predictions, store_windows
from despite_core.runtime.buffers import NS
from despite_core.runtime.inference import Runtime, default_bundle_path


@pytest.fixture(scope="module")
def runtime():
    return Runtime(default_bundle_path(), providers="cpu")


def test_joint_features_ignore_where_the_person_is_and_which_way_they_face():
    rng = np.random.default_rng(0)
    j = rng.normal(size=(3, 24, 24, 3)) * 0.3
    j[..., 2] += 1.0
    turned = j @ rot_z(np.array(1.1)).T + np.array([4.0, -2.0, 0.0])
    assert np.allclose(joint_features(j), joint_features(turned), atol=1e-4)
    # but not what the body does: raising every joint changes nothing relative, lifting the head does
    lifted = j.copy()
    lifted[:, :, 15, 2] += 0.3
    assert not np.allclose(joint_features(j), joint_features(lifted), atol=1e-3)


def test_feature_classifier_learns_separable_classes():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 10)) * 3
    y = rng.integers(0, 4, 400)
    x = (centres[y] + rng.normal(size=(400, 10))).astype(np.float32)
    y[:5] = -1                                                     # ambiguous windows are not trained on
    clf = FeatureClassifier(4, epochs=30).fit(x[:300], y[:300])
    test = y[300:] >= 0
    assert (clf.predict(x[300:])[test] == y[300:][test]).mean() > 0.9


def test_store_windows_are_the_windows_the_pipeline_scores(runtime, tmp_path):
    """Stages 1-2 read the scene's store, stages 3-4 its full scans: the same scene simulated twice must
    give the same windows under the same keys (newest stamp, person) with the same labels, or the
    stages would compare different windows."""
    cfg = world_config("32 beams", 905, 8.0)
    generate(cfg, tmp_path / "s", progress=False)
    w = store_windows(tmp_path / "s", runtime, None, 3, with_model=True)
    truth, live = scene_predictions(runtime, "32 beams", 905, 8.0)
    keys = [(int(round(t * NS)), int(p)) for t, p in zip(w["newest"], w["person"])]
    labelled = [(k, lb) for k, lb in zip(keys, w["label"]) if lb >= 0]
    assert len(labelled) >= 10
    assert all(k in truth and truth[k][0] == lb for k, lb in labelled)
    assert len(w["imu"]) == len(keys)
    # the live pipeline scores windows under the same keys (most of a near person's windows are covered)
    assert sum(k in live for k, _ in labelled) >= 0.5 * len(labelled)


def test_eval_waterfall_end_to_end(tmp_path):
    train = tmp_path / "train"
    generate(WorldConfig(minutes=1.0, scene_minutes=0.5, seed=100, lidar=LidarConfig(beams=32, columns=512),
                         edition=default_edition()), train, progress=False)        # the bundle's classes
    out = tmp_path / "wf"
    assert main(["eval", "waterfall", "--model", str(default_bundle_path()), "--train-store", str(train),
                 "--seeds", "906", "--seconds", "8", "--kind", "32 beams", "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "waterfall.json").read_text())
    assert res["windows"] > 0 and set(res["stages"]) == {"joints", "imu", "pointcloud_gt", "live"}
    for st in res["stages"].values():
        assert sum(v["windows"] for v in st["per_class"].values()) == res["windows"]
    assert "| stage | accuracy |" in (out / "waterfall.md").read_text()
    assert main(["eval", "waterfall", "--model", str(default_bundle_path()), "--train-store", str(train),
                 "--kind", "nowhere", "--out", str(out), "--quiet"]) == 2
