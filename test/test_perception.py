"""Unit tests of despite_core.runtime.perception on the simulator's scans (ground truth from gt_person)
and on hand-built scenes. No rclpy."""
from __future__ import annotations

import numpy as np
import pytest

from despite_core.data.synth.bag import scan_arrays
from despite_core.data.synth.world import WorldConfig, build_scene, iter_timeline
from despite_core.runtime.perception import Perception, PerceptionConfig, estimate_ground


def sim_scans(seconds: float, seed: int, people: int = 2, beams: int = 64):

    from despite_core.data.synth.lidar import LidarConfig

    cfg = WorldConfig(minutes=seconds / 60, people=people, seed=seed, scene_minutes=seconds / 60,
                      lidar=LidarConfig(beams=beams))
    scene = build_scene(cfg, 0, seconds)
    for t, kind, scan in iter_timeline(scene, full=True):
        if kind == "scan":
            a = scan_arrays(scan)
            yield t, np.stack([a["x"], a["y"], a["z"]], 1), a["gt_person"]


def test_people_in_the_simulator_are_tracked_with_stable_ids():
    per = Perception()
    found, scans, track_of = 0, 0, {}
    for t, xyz, gt in sim_scans(12.0, seed=3):
        r = per.process(xyz, t)
        if r.learning:
            continue
        scans += 1
        for person in r.people:
            ids, counts = np.unique(gt[person.indices], return_counts=True)
            majority = int(ids[np.argmax(counts)])
            assert majority != 0, "a track made mostly of background"
            assert counts.max() / counts.sum() > 0.75
            track_of.setdefault(majority, set()).add(person.track_id)
            assert person.normalised.shape == (256, 3) and abs(person.normalised.mean(0)).max() < 0.3
        found += len({int(np.bincount(gt[p.indices]).argmax()) for p in r.people})
    assert scans > 90
    assert found / (2 * scans) > 0.85                      # both people found in most scans
    assert set(track_of) == {1, 2} and all(len(v) <= 2 for v in track_of.values())   # ids stable
    assert per.ground == pytest.approx(-1.6, abs=0.2)      # LiDAR mounted 1.6 m above the floor


def box_person(centre, rng, n=300):
    """Points on a 0.4 x 0.3 x 1.7 m box standing on the floor (z = -1.5 in the sensor frame)."""
    p = rng.uniform([-0.2, -0.15, 0.0], [0.2, 0.15, 1.7], (n, 3))
    return p + [centre[0], centre[1], -1.5]


def room(rng, n=20000):
    """Floor and four walls around the sensor."""
    floor = np.c_[rng.uniform(-8, 8, (n, 2)), np.full(n, -1.5)]
    ang = rng.uniform(-np.pi, np.pi, n)
    walls = np.c_[9 * np.cos(ang), 9 * np.sin(ang), rng.uniform(-1.5, 1.5, n)]
    return np.concatenate([floor, walls]) + rng.normal(0, 0.01, (2 * n, 3))


def test_tracks_survive_short_occlusions_and_reset_when_time_goes_backwards():
    rng = np.random.default_rng(0)
    bg = room(rng)
    per = Perception(PerceptionConfig(background_learn_s=0.5))
    ids = []
    for k in range(40):
        t = k * 0.1
        pts = [bg]
        occluded = 20 <= k < 22
        if not occluded:
            pts.append(box_person((3 + 0.05 * k, 1.0), rng))       # walking at 0.5 m/s
        pts.append(np.full((5, 3), np.nan))                         # NaN returns are ignored
        r = per.process(np.concatenate(pts), t)
        if not r.learning and not occluded:
            ids.append([p.track_id for p in r.people])
    assert all(i == ids[-1] for i in ids[-15:]) and len(ids[-1]) == 1      # the same id after the gap
    r = per.process(bg, 0.0)                                                # a bag looping
    assert r.learning and r.lost == ids[-1]


def test_close_people_are_split_by_their_tracks_and_background_off_removes_the_floor():
    rng = np.random.default_rng(1)
    bg = room(rng)
    per = Perception(PerceptionConfig(background_learn_s=0.3))
    for k in range(30):
        a, b = (3.0, 1.0 - 0.03 * k), (3.0, -0.5 + 0.02 * k)              # approaching each other
        r = per.process(np.concatenate([bg, box_person(a, rng), box_person(b, rng)]), k * 0.1)
    gap = abs(a[1] - b[1])
    assert gap < 0.6 and len(r.people) == 2                                 # touching grid cells, still two
    assert sorted(round(float(p.centroid[1]), 1) for p in r.people) == sorted(round(y, 1) for y in (a[1], b[1]))
    moving = Perception(PerceptionConfig(background=False))
    r0 = moving.process(np.concatenate([bg[:20000], box_person((2, 2), rng)]), 0.0)   # floor only: no walls
    assert moving.ground == pytest.approx(-1.5, abs=0.05) and r0.foreground < 400
    with pytest.raises(ValueError, match="expected \\(N, 3\\) points"):
        moving.process(np.zeros((4, 2)), 0.1)
    with pytest.raises(ValueError, match="min_range < max_range"):
        PerceptionConfig(min_range=5, max_range=1)
    assert estimate_ground(np.zeros((10, 3)), np.ones(10)) is None


def test_a_start_without_returns_does_not_block_detection_and_the_gate_applies_before_assignment():
    from despite_core.runtime.perception import Tracker

    rng = np.random.default_rng(2)
    bg = room(rng)
    per = Perception(PerceptionConfig(background_learn_s=0.3))
    for k in range(5):                                             # a driver warming up: empty clouds
        per.process(np.zeros((0, 3)), k * 0.1)
    found = 0
    for k in range(5, 40):
        r = per.process(np.concatenate([bg, box_person((3.0, 1.0), rng)]), k * 0.1)
        found += len(r.people)
    assert per.ground == pytest.approx(-1.5, abs=0.05) and found > 20
    # Two tracks, two detections: the pairing with both inside the 1 m gate wins over the cheaper total.
    tr = Tracker(PerceptionConfig(min_hits=1))
    tr.update(0.0, np.array([[0.06, -0.11], [0.16, 0.63]]))
    ids, _ = tr.update(0.0, np.array([[-0.57, -0.01], [-0.80, 0.03]]))
    assert sorted(ids) == [1, 2]
