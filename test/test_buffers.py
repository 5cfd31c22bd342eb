"""Unit tests of despite_core.runtime.buffers: scan selection by stamp, per-track windows with the gap
policy, IMU conversion and resampling at scan stamps. No rclpy."""
from __future__ import annotations

import numpy as np
import pytest

from despite_core.data.imu_layout import ImuLayout, ImuLayoutError
from despite_core.data.rotations import matrix_to_quat, rot_z
from despite_core.runtime.buffers import (NS, BufferConfig, FrameSelector, TrackBuffers, WearerImu, imu_message_values,
                                 to_layout)

CFG = BufferConfig()
P = CFG.period_ns


def test_selector_subsamples_a_faster_lidar_and_flags_duplicates_and_backwards_stamps():
    sel = FrameSelector(CFG)
    rng = np.random.default_rng(0)
    stamps = (np.arange(40) * 0.05 + rng.normal(0, 0.003, 40)) * NS     # 20 Hz with jitter
    got = [sel.offer(int(s)) for s in stamps]
    assert got.count("selected") == 20 and got[0] == "selected" and got[1] == "skipped"
    assert sel.offer(sel.last) == "duplicate"
    assert sel.offer(sel.last - P) == "backwards"
    assert sel.offer(sel.last + P) == "selected"


def frames(k: int, value: float = 0.0):
    return np.full((256, 3), value, np.float32), np.array([k, 0, 0], np.float32)


def test_track_windows_fill_short_gaps_and_reset_on_long_ones():
    buf = TrackBuffers(CFG)
    for i in range(23):
        buf.push(i * P, {1: (*frames(i, i), {"i": i}), 2: (*frames(i), None)})
    assert buf.ready() == []                                   # 23 frames: not yet
    buf.push(23 * P, {1: (*frames(23, 23), {"i": 23}), 2: (*frames(23), None)})
    w = {x.track_id: x for x in buf.ready()}
    assert set(w) == {1, 2} and w[1].points.shape == (24, 256, 3) and w[1].filled == 0
    assert np.array_equal(w[1].stamps, np.arange(24) * P) and w[1].extras[-1] == {"i": 23}
    # One lost scan (a missing stamp): every track repeats its last frame at the missing stamp.
    buf.push(25 * P, {1: (*frames(25, 25), None), 2: (*frames(25), None)})
    w1 = {x.track_id: x for x in buf.ready()}[1]
    assert w1.filled == 1 and w1.stamps[-2] == 24 * P and w1.points[-2, 0, 0] == 23
    # Perception misses track 2 once: filled, not ready now, ready when seen again.
    buf.push(26 * P, {1: (*frames(26), None)})
    assert [x.track_id for x in buf.ready()] == [1]
    buf.push(27 * P, {1: (*frames(27), None), 2: (*frames(27), None)})
    assert [x.track_id for x in buf.ready()] == [1, 2]
    # Gone for more than max_gap scans: dropped.
    dropped = []
    for i in range(28, 28 + CFG.max_gap + 1):
        dropped += buf.push(i * P, {1: (*frames(i), None)})
    assert dropped == [2] and 2 not in buf.tracks
    # A gap longer than max_gap periods clears every buffer (a window spans 24 periods exactly).
    assert buf.push(60 * P, {1: (*frames(60), None)}) == [1]
    assert len(buf.tracks[1]) == 1 and buf.ready() == []
    with pytest.raises(ValueError, match="stamps must increase"):
        buf.push(60 * P, {})


LAYOUT = ImuLayout(channels=("rotmat", "acc", "gyro"))


def spinning(t: np.ndarray, rate: float = 0.8, tilt: float = 0.0):
    """A sensor at rest, tilted by ``tilt`` rad about its x axis, turning about world z at ``rate``
    rad/s: (N, 10) Imu values."""
    c, s = np.cos(tilt), np.sin(tilt)
    rot = rot_z(rate * t) @ np.array([[1, 0, 0], [0, c, -s], [0, s, c]])   # (N, 3, 3) sensor -> world
    acc = np.einsum("nji,j->ni", rot, [0.0, 0.0, 9.81])                     # specific force, sensor frame
    gyro = np.einsum("nji,j->ni", rot, [0.0, 0.0, rate])                    # world z rate, sensor frame
    return np.concatenate([matrix_to_quat(rot), gyro, acc], 1), rot


def test_imu_conversion_follows_the_declared_layout():
    v, rot = spinning(np.array([0.0, 0.5]))
    out = to_layout(v, LAYOUT)
    assert np.allclose(out[:, :9].reshape(-1, 3, 3), rot, atol=1e-6)
    assert np.allclose(np.einsum("nij,nj->ni", rot, out[:, 9:12]), [0, 0, 9.81], atol=1e-5)   # +g up
    removed = to_layout(v, ImuLayout(channels=("acc",), gravity="removed"))
    assert np.allclose(removed, 0, atol=1e-5)
    # tilted by 60 deg the sensor-frame specific force is not (0, 0, g): the world frame must be
    tilted, _ = spinning(np.array([0.0, 0.5]), tilt=np.deg2rad(60))
    assert not np.allclose(tilted[:, 7:], [0, 0, 9.81], atol=1.0)
    world = to_layout(tilted, ImuLayout(channels=("quat", "acc"), acc_frame="world"))
    assert np.allclose(world[:, 4:], [0, 0, 9.81], atol=1e-5)
    assert np.allclose(to_layout(tilted, ImuLayout(channels=("acc",), gravity="removed", acc_frame="world")), 0,
                       atol=1e-5)
    assert imu_message_values((1, 0, 0, 0), (0, 0, np.nan), (0, 0, 9.8)) is None
    assert imu_message_values((0, 0, 0, 0), (0, 0, 0), (0, 0, 9.8)) is None
    with pytest.raises(ImuLayoutError, match="cannot be produced"):
        WearerImu(ImuLayout(world="z_up_shared_heading"), CFG)


def test_wearer_imu_resamples_at_scan_stamps_with_slerp_and_a_staleness_bound():
    imu = WearerImu(LAYOUT, CFG)
    t = np.arange(0, 3.0, 0.01)                                              # 100 Hz
    v, _ = spinning(t)
    for site in LAYOUT.sites:
        for ti, vi in zip(t, v):
            assert imu.push(site, int(round(ti * NS)), vi) == "ok"
    scans = (0.333 + np.arange(24) * 0.1) * NS                               # between IMU samples
    win, why = imu.window(scans.astype(np.int64))
    assert why == "" and win.shape == (24, 4 * 15)
    _, rot = spinning(scans / NS)
    assert np.allclose(win[:, :9].reshape(-1, 3, 3), rot, atol=1e-5)        # slerp of a constant-rate turn
    assert np.allclose(win[:, 15:24].reshape(-1, 3, 3), rot, atol=1e-5)      # second site
    late = (scans + 0.6 * NS).astype(np.int64)                               # newest scan 0.24 s after the newest sample
    assert imu.window(late)[0] is None and "older than the scan" in imu.window(late)[1]
    early = (scans - 0.34 * NS).astype(np.int64)
    assert "starts after the window" in imu.window(early)[1]
    assert imu.push("left_forearm", int(t[-1] * NS), v[-1]) == "duplicate"
    assert imu.push("left_forearm", int(5 * NS), None) == "invalid"
    assert imu.push("left_forearm", 0, v[0]) == "backwards" and len(imu.samples["left_forearm"]) == 1
    with pytest.raises(KeyError, match="not in the bundle's IMU layout"):
        imu.push("head", 0, v[0])


@pytest.mark.parametrize("hz", [12.0, 15.0, 20.0, 25.0])
def test_selector_keeps_the_model_rate_for_any_lidar_rate(hz):
    sel = FrameSelector(CFG)
    stamps = (np.arange(int(hz * 12)) / hz * NS).astype(np.int64)                 # 12 s
    chosen = [s for s in stamps if sel.offer(int(s)) == "selected"]
    span = (chosen[-1] - chosen[0]) / NS
    assert abs((len(chosen) - 1) / span - 10.0) < 0.3, (hz, len(chosen), span)   # a window stays ~2.4 s
    # One late scan does not shift the grid: 0, 100, 226, 300, 400 ms keeps 300.
    sel = FrameSelector(CFG)
    got = [sel.offer(t * 10**6) for t in (0, 100, 226, 300, 400)]
    assert got == ["selected"] * 5


def test_wearer_imu_rejects_a_gap_inside_the_window():
    imu = WearerImu(LAYOUT, CFG)
    t = np.r_[np.arange(0, 1.0, 0.01), np.arange(2.0, 3.0, 0.01)]                # 1 s without packets
    v, _ = spinning(t)
    for site in LAYOUT.sites:
        for ti, vi in zip(t, v):
            imu.push(site, int(round(ti * NS)), vi)
    win, why = imu.window(((0.5 + np.arange(24) * 0.1) * NS).astype(np.int64))
    assert win is None and "without samples inside the window" in why
