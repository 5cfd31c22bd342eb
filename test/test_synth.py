"""The synthetic world: physical consistency across modalities, determinism, store and bag outputs."""
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from despite_core.data.rotations import axis_angle_to_matrix, matrix_to_axis_angle, quat_to_matrix
from despite_core.data.store import Store
from despite_core.data.synth.body import POSE_CHANNELS, BodyShape, CapsuleMesh, capsule_endpoints, distance_to_capsules, forward_kinematics
from despite_core.data.synth.imu import GRAVITY, ImuConfig, simulate_imu
from despite_core.data.synth.lidar import LidarConfig, LidarSimulator, Room
from despite_core.data.synth.motion import CLASS_NAMES
from despite_core.data.synth.generate import generate
from despite_core.data.synth.world import WorldConfig, build_scene, iter_scans
from despite_core.data.windows import iter_windows

SMALL_LIDAR = LidarConfig(beams=32, columns=512)


def small_config(**kw):
    base = dict(minutes=0.25, people=2, seed=5, scene_minutes=0.25, lidar=SMALL_LIDAR)
    base.update(kw)
    return WorldConfig(**base)


@pytest.fixture(scope="module")
def scene():
    return build_scene(small_config(), 0, 15.0)


@pytest.fixture(scope="module")
def clean_scene():
    return build_scene(small_config(difficulty=0.0), 0, 15.0)


def integrate_gyro(r0, gyro, dt):
    """Orientation track from the angular rate (sensor frame): R_{k+1} = R_k exp(w_k dt).

    Central-difference rates are centred on the sample; the midpoint of two samples is used."""
    out = [r0]
    for k in range(len(gyro) - 1):
        w = 0.5 * (gyro[k] + gyro[k + 1])
        out.append(out[-1] @ axis_angle_to_matrix(w * dt))
    return np.stack(out)


def angle_between(a, b):
    return np.linalg.norm(matrix_to_axis_angle(np.swapaxes(a, -1, -2) @ b), axis=-1)


# ------------------------------------------------------------------ IMU consistency
def test_integrated_gyro_reproduces_orientation(scene):
    person = scene.people[0]
    dt = float(person.imu.times[1] - person.imu.times[0])
    n = 1000  # 10 s of activity
    for s in range(len(person.imu.sites)):
        ideal = person.imu_ideal
        track = integrate_gyro(ideal.orientation[0, s], ideal.gyro[:n, s], dt)
        err = np.rad2deg(angle_between(track, ideal.orientation[:n, s]))
        assert err.max() < 2.0, f"{ideal.sites[s]}: integrated ideal gyro drifts {err.max():.2f} deg over 10 s"
        # Measured readings (noise, bias, heading offset, filter drift) stay consistent too: relative
        # to the start the integrated rate follows the reported orientation within a few degrees.
        meas = person.imu
        track = integrate_gyro(meas.orientation[0, s], meas.gyro[:n, s], dt)
        err = np.rad2deg(angle_between(track, meas.orientation[:n, s]))
        assert err.max() < 6.0, f"{meas.sites[s]}: measured gyro vs orientation differ by {err.max():.2f} deg"


def test_body_at_rest_reads_gravity():
    shape = BodyShape()
    n = 300
    times = np.arange(n) / 100.0
    kin = forward_kinematics(shape, np.zeros((n, len(POSE_CHANNELS))), np.tile([3.0, 1.0], (n, 1)),
                             np.full(n, 0.7), times)
    measured, ideal = simulate_imu(kin, ImuConfig(), np.random.default_rng(0))
    # Ideal: specific force is exactly gravity's reaction, +9.81 along world up, in every sensor frame.
    up = np.einsum("nsij,nsj->nsi", ideal.orientation, ideal.acc)
    assert np.allclose(up, [0, 0, GRAVITY], atol=1e-6)
    assert np.allclose(ideal.gyro, 0, atol=1e-9)
    # Measured: the same within bias + noise (3 mg bias, 150 ug/sqrt(Hz) noise -> ~0.1 m/s^2).
    mag = np.linalg.norm(measured.acc, axis=-1).mean(axis=0)
    assert np.all(np.abs(mag - GRAVITY) < 0.15), mag
    assert np.all(np.abs(measured.gyro.mean(axis=0)) < np.deg2rad(0.6))


def test_imu_heading_is_random_per_wearer(scene):
    yaws = []
    for p in scene.people:
        rel = p.imu.orientation[:50, 0] @ np.swapaxes(p.imu_ideal.orientation[:50, 0], -1, -2)
        # measured = Rz(psi) @ ideal @ small filter error: rel is (nearly) a rotation about z
        yaw = np.arctan2(rel[:, 1, 0], rel[:, 0, 0])
        assert np.allclose(rel[:, 2, 2], 1.0, atol=2e-3)
        yaws.append(float(np.median(yaw)))
    assert abs(yaws[0] - yaws[1]) > np.deg2rad(1.0)


# ------------------------------------------------------------------ LiDAR consistency
def _surface_distances(scene, noise, n_scans=12):
    sim = scene.lidar
    dists = {p.pid: [] for p in scene.people}
    for i, scan in enumerate(iter_scans(scene, full=False, noise_scale=noise)):
        if i >= n_scans:
            break
        for p in scene.people:
            pts = scan.xyz[scan.gt_person == p.pid]
            if not len(pts):
                continue
            k = int(p.sample_index(scan.stamp))
            t_person = scan.stamp + sim.sweep_offset(p.kin.positions[k, 0, :2])
            a, b, r = capsule_endpoints(p.kin.positions[int(p.sample_index(t_person))], p.shape.girth)
            dists[p.pid].append(distance_to_capsules(sim.sensor_to_world(pts), a, b, r))
    return {k: np.concatenate(v) for k, v in dists.items() if v}


def test_lidar_returns_lie_on_body_surfaces(clean_scene, scene):
    d = _surface_distances(clean_scene, 0.0)
    assert d, "no person was hit"
    for pid, v in d.items():
        # Noise-free: on the capsule surface up to the mesh tessellation (10 segments: < 1.5 cm).
        assert np.abs(v).max() < 0.015, f"person {pid}: {np.abs(v).max():.3f} m off the surface"
    d = _surface_distances(scene, 1.0)
    for pid, v in d.items():
        sigma = SMALL_LIDAR.range_noise
        assert np.abs(v).max() < 5 * sigma + 0.015
        assert np.std(v) < 1.5 * sigma + 0.005


def test_people_occlude_each_other():
    room = Room(length=12, width=8)
    sim = LidarSimulator(replace(SMALL_LIDAR, mount_xyz=(0.3, 0.0, 1.5)), room)
    shape = BodyShape()
    n = 1
    zero = np.zeros((n, len(POSE_CHANNELS)))

    def body(x):
        kin = forward_kinematics(shape, zero, np.array([[x, 0.0]]), np.zeros(n), np.zeros(n))
        a, b, r = capsule_endpoints(kin.positions[0])
        mesh = CapsuleMesh(r)
        return mesh.pose(a, b), mesh.triangles

    rng = np.random.default_rng(0)
    back_v, back_t = body(6.0)
    front_v, front_t = body(3.0)
    alone = sim.scan(0.0, [(2, back_v, back_t, 0.5)], [], rng, full=False, noise_scale=0.0)
    behind = sim.scan(0.0, [(1, front_v, front_t, 0.5), (2, back_v, back_t, 0.5)], [], rng, full=False, noise_scale=0.0)
    n_alone = int((alone.gt_person == 2).sum())
    n_behind = int((behind.gt_person == 2).sum())
    assert n_alone > 50
    assert n_behind < 0.3 * n_alone, (n_alone, n_behind)
    # Nearer people get more returns (sparse clouds at distance).
    assert int((behind.gt_person == 1).sum()) > 2 * n_alone


def box_sdf(p, lo, hi):
    """Signed distance of points p (M, 3) to an axis-aligned box."""
    c, h = (lo + hi) / 2, (hi - lo) / 2
    q = np.abs(p - c) - h
    return np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)


def test_full_scan_background_lies_on_the_room(scene):
    scan = next(iter_scans(scene, full=True, noise_scale=1.0))
    cfg = scene.lidar.config
    assert 0.5 * cfg.beams * cfg.columns < len(scan.xyz) <= cfg.beams * cfg.columns
    assert scan.ring.max() < cfg.beams and scan.t.max() < 1.0 / cfg.rate
    world = scene.lidar.sensor_to_world(scan.xyz)[scan.gt_person == 0]
    room = scene.room
    L, W, H = room.length, room.width, room.height
    d = np.min(np.stack([np.abs(world[:, 2]), np.abs(world[:, 2] - H), np.abs(world[:, 0] + 0.5),
                         np.abs(world[:, 0] - L), np.abs(np.abs(world[:, 1]) - W / 2)]
                        + [np.abs(box_sdf(world, lo, hi)) for lo, hi, _ in room.boxes]), axis=0)
    assert np.percentile(d, 99.9) < 5 * cfg.range_noise, np.percentile(d, 99.9)
    assert (np.abs(world[:, 2]) < 0.1).mean() > 0.05  # the floor is seen


# ------------------------------------------------------------------ store and determinism
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "store"
    summary = generate(small_config(minutes=0.5), out, progress=False)
    return out, summary


def test_store_content(store):
    path, summary = store
    st = Store(path)
    assert st.class_names == CLASS_NAMES
    assert len(st) == 4 and summary["scans"] == 300
    # Pick the best-seen person: a person may stand behind a pillar for a whole scene, as in life.
    seqs = [st.read(s) for s in st.sequence_ids]
    seq = max(seqs, key=lambda s: sum(len(p) for p in s.points))
    assert seq.modalities == ("points", "imu", "joints")
    assert seq.fps == 10.0 and seq.num_frames == 150
    assert seq.imu.shape == (150, 4, 15)
    assert (seq.labels >= 0).all()
    assert np.mean([len(p) for p in seq.points]) > 20
    # Clouds and joints share the sensor frame: each cloud's centroid is near the pelvis.
    offs = [np.linalg.norm(p.mean(0)[:2] - j[0, :2]) for p, j in zip(seq.points, seq.joints) if len(p) > 20]
    assert np.median(offs) < 0.3
    # Test subjects are unseen in training: scenes (and their people) split by subject.
    train = {st.info(s)["subject"] for s in st.split("by_subject", "train")}
    test = {st.info(s)["subject"] for s in st.split("by_subject", "test")}
    assert train and test and not train & test
    # Windows cut and label.
    wins = list(iter_windows(seq, stride=6, imu_layout=st.imu_layout))
    assert len(wins) == 22 and all(w.imu.shape == (24, 4, 15) for w in wins)
    # Some text is missing on purpose (untexted segments), most is present.
    frac = np.mean(seq.text != "")
    assert 0.0 < frac <= 1.0


def test_deterministic_for_a_seed(tmp_path):
    a = generate(small_config(minutes=0.1, scene_minutes=0.1), tmp_path / "a", progress=False)
    b = generate(small_config(minutes=0.1, scene_minutes=0.1), tmp_path / "b", progress=False)
    generate(small_config(minutes=0.1, scene_minutes=0.1, seed=6), tmp_path / "c", progress=False)
    sa, sb, sc = (Store(tmp_path / x) for x in "abc")
    for sid in sa.sequence_ids:
        x, y = sa.read(sid), sb.read(sid)
        assert np.array_equal(x.imu, y.imu) and np.array_equal(x.joints, y.joints)
        assert all(np.array_equal(p, q) for p, q in zip(x.points, y.points))
    assert not np.array_equal(sa.read(sa.sequence_ids[0]).joints, sc.read(sc.sequence_ids[0]).joints)
    assert a["class_frames"] == b["class_frames"]


def test_difficulty_scales_noise(clean_scene, scene):
    assert np.allclose(clean_scene.people[0].imu.acc, clean_scene.people[0].imu_ideal.acc)
    assert not np.allclose(scene.people[0].imu.acc, scene.people[0].imu_ideal.acc)


# ------------------------------------------------------------------ bag
def test_bag_topics_fields_and_agreement_with_store(tmp_path):
    from rosbags.rosbag2 import Reader

    from despite_core.data.pointcloud2 import decode_fields
    from despite_core.data.rosbag import to_seconds, typestore
    from despite_core.data.synth.bag import EPOCH

    cfg = small_config(minutes=3 / 60, scene_minutes=3 / 60, lidar=LidarConfig(beams=16, columns=512))
    summary = generate(cfg, tmp_path / "store", bag=tmp_path / "bag", progress=False)
    assert summary["bag_mb"] > 0
    ts = typestore()
    st = Store(tmp_path / "store")
    seq1 = st.read("scene0000/person_1")
    with Reader(tmp_path / "bag") as reader:
        topics = {c.topic: c for c in reader.connections}
        assert topics["/lidar/points"].msgcount == 30
        assert topics["/ground_truth/activities"].msgcount == 30
        for k in (1, 2):
            for site in ("left_forearm", "right_forearm", "left_lower_leg", "right_lower_leg"):
                assert topics[f"/person_{k}/imu/{site}"].msgcount == 300
        last = -1
        n_scan = 0
        for conn, t, raw in reader.messages():
            assert t >= last, "messages must be written in time order"
            last = t
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == "/lidar/points":
                f = decode_fields(msg, ["x", "y", "z", "intensity", "ring", "t", "gt_person"])
                assert f["gt_person"].dtype == np.uint16 and f["ring"].dtype == np.uint16
                assert f["t"].dtype == np.float32 and f["intensity"].dtype == np.float32
                assert msg.header.frame_id == "lidar"
                # Person returns in the bag are the store's person clouds (same count per scan).
                stamp = to_seconds(msg.header.stamp) - EPOCH
                i = int(np.argmin(np.abs(seq1.timestamps - stamp)))
                assert int((f["gt_person"] == 1).sum()) == len(seq1.points[i])
                n_scan += 1
            elif conn.topic == "/ground_truth/activities":
                stamp = to_seconds(msg.header.stamp) - EPOCH
                i = int(np.argmin(np.abs(seq1.timestamps - stamp)))
                assert msg.source == "ground_truth"
                assert msg.people[0].wearer_id == "person_1"
                assert msg.people[0].label == CLASS_NAMES[seq1.labels[i]]
            elif conn.topic == "/person_1/imu/left_forearm":
                stamp = to_seconds(msg.header.stamp) - EPOCH
                i = np.nonzero(np.abs(seq1.timestamps - stamp) < 1e-6)[0]
                if i.size:  # at a scan stamp the store holds exactly this reading
                    q = msg.orientation
                    r = quat_to_matrix(np.array([q.w, q.x, q.y, q.z]))
                    assert np.allclose(r.reshape(9), seq1.imu[i[0], 0, :9], atol=1e-5)
                    a = msg.linear_acceleration
                    assert np.allclose([a.x, a.y, a.z], seq1.imu[i[0], 0, 9:12], atol=1e-4)
        assert n_scan == 30


# ------------------------------------------------------------------ CLI
def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "despite_core.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_synth_and_errors(tmp_path):
    out = run_cli("synth", "--out", str(tmp_path / "s"), "--minutes", "0.05", "--people", "1",
                  "--lidar-beams", "16", "--quiet", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["person_frames"] == 30
    again = run_cli("synth", "--out", str(tmp_path / "s"), "--minutes", "0.05", "--quiet")
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr
    bad = run_cli("synth", "--out", str(tmp_path / "t"), "--difficulty", "5", "--quiet")
    assert bad.returncode == 2 and "difficulty must be within [0, 2]" in bad.stderr
    none = run_cli("synth")
    assert none.returncode == 2 and "--out" in none.stderr
    fixed = run_cli("synth", "--out", str(tmp_path / "m"), "--minutes", "0.05", "--lidar-beams", "16",
                    "--lidar-mount", "0.5,2.2,10", "--lidar-fov", "10,-30", "--quiet")
    assert fixed.returncode == 0, fixed.stderr
    lidar = Store(tmp_path / "m").read("scene0000/person_1").attrs["lidar"]
    assert lidar["mount_xyz"][1:] == [0.5, 2.2] and abs(lidar["mount_rpy"][1] - np.deg2rad(10)) < 1e-9
    fov = run_cli("synth", "--out", str(tmp_path / "f"), "--lidar-fov", "10,30", "--quiet")
    assert fov.returncode == 2 and "vertical field of view" in fov.stderr
    sites = run_cli("synth", "--out", str(tmp_path / "u"), "--imu-sites", "left_forearm,elbow", "--quiet")
    assert sites.returncode == 2 and "unknown IMU sites ['elbow']" in sites.stderr


# ------------------------------------------------------------------ BVH drives the same sensors
def test_bvh_mocap_drives_the_sensor_models(tmp_path):
    from test_importers import LAFAN, make_bvh

    # 3 s at 30 fps: the left elbow swings 0..90 deg at 1 Hz, the right arm stays still.
    frames = {f: {"LeftForeArm.Zrotation": 45.0 - 45.0 * np.cos(2 * np.pi * f / 30)} for f in range(90)}
    path = tmp_path / "clip.bvh"
    path.write_text(make_bvh(LAFAN, frames, 90))
    cfg = small_config(minutes=0.1, scene_minutes=0.1, people=1, bvh=(str(path),), difficulty=0.0)
    generate(cfg, tmp_path / "store", progress=False)
    seq = Store(tmp_path / "store").read("scene0000/person_1")
    assert seq.attrs["source"] == "bvh"
    assert (seq.labels == -1).all()                      # mocap carries no labels
    assert np.mean([len(p) for p in seq.points]) > 20   # the body is seen by the LiDAR
    gyro = np.linalg.norm(seq.imu[:, :, 12:15], axis=-1)  # (T, sites)
    left, right = gyro[:, 0], gyro[:, 1]
    assert left.max() > 1.0 and right.max() < 0.05       # the swinging forearm's IMU turns, the other does not
    # Joints follow the clip: the left wrist moves relative to the pelvis, the right one does not.
    rel = seq.joints[:, 20] - seq.joints[:, 0]
    assert np.ptp(rel, axis=0).max() > 0.2
    assert np.ptp(seq.joints[:, 21] - seq.joints[:, 0], axis=0).max() < 0.01


def _walking_clip(tmp_path, name="walk.bvh", seconds=1.0, speed_cm=120.0, lie_down=False):
    """A LAFAN-rig clip whose root travels forward (+z in the rig, cm) at ``speed_cm`` per second; with
    ``lie_down`` it starts lying (hips rolled 90 deg, pelvis near the floor) and ends upright: a cut."""
    from test_importers import LAFAN, make_bvh

    n = int(seconds * 30)
    frames = {}
    for f in range(n):
        frames[f] = {"Hips.Zposition": speed_cm * f / 30, "LeftUpLeg.Xrotation": 20 * np.sin(2 * np.pi * f / n)}
        if lie_down and f < n // 2:
            frames[f].update({"Hips.Xrotation": 90.0, "Hips.Yposition": 15.0})
    path = tmp_path / name
    path.write_text(make_bvh(LAFAN, frames, n))
    return path


def test_labelled_mocap_repeats_its_clip_continuing_where_it_ended(tmp_path):
    path = _walking_clip(tmp_path)
    cfg = small_config(minutes=0.1, scene_minutes=0.1, people=1, bvh=(str(path),), edition=2,
                       bvh_labels=(((0.0, 0.5, "walk"), (0.5, 2.0, "run")),))
    person = build_scene(cfg, 0, 6.0).people[0]
    root = person.kin.positions[:, 0, :2]
    step = np.linalg.norm(np.diff(root, axis=0), axis=1) * cfg.imu.rate
    assert step.max() < 3.0                      # never teleports back to the clip's start (1.2 m/s walk)
    assert np.ptp(root, axis=0).max() > 3.0      # and travels on through the repetitions
    t = np.arange(0.05, 5.5, 0.1)
    labels, texts = person.labels_at(t)
    clip_t = np.mod(t, 29 / 30)                  # the clip spans 29 frame periods
    want = np.where(clip_t < 0.5, cfg.class_names.index("walk"), cfg.class_names.index("run"))
    assert (labels == want).mean() > 0.9         # the clip's labels repeat (frame-rounding at the bounds)
    assert set(texts) == {"walk", "run"}


def test_a_mocap_cut_is_unlabelled_around_it(tmp_path):
    path = _walking_clip(tmp_path, "getup.bvh", seconds=2.0, speed_cm=0.0, lie_down=True)
    cfg = small_config(minutes=0.2, scene_minutes=0.2, people=1, bvh=(str(path),), edition=2,
                       bvh_labels=(((0.0, 1.0, "lying"), (1.0, 3.0, "get up")),))
    person = build_scene(cfg, 0, 12.0).people[0]
    span = 59 / 30
    t = np.arange(0.0, 11.0, 0.05)
    labels, _ = person.labels_at(t)
    to_cut = np.min(np.abs(t[:, None] - span * np.arange(1, 8)[None, :]), axis=1)
    assert (labels[to_cut < 1.25] == -1).all()   # lying after standing is a jump: no label spans it
    assert (labels[to_cut > 1.35] >= 0).all()
    with pytest.raises(ValueError, match="not a class of edition 1"):
        small_config(people=1, bvh=(str(path),), bvh_labels=(((0.0, 1.0, "lying"),),))
    with pytest.raises(ValueError, match="one entry per BVH file"):
        small_config(people=1, bvh=(str(path),), bvh_labels=((), ()))


def test_synth_bvh_labels_on_the_command_line(tmp_path):
    path = _walking_clip(tmp_path)
    csv = tmp_path / "labels.csv"
    csv.write_text("file,start_s,end_s,label\nwalk.bvh,0,2,walk\nother.bvh,0,1,run\n")
    ok = run_cli("synth", "--out", str(tmp_path / "s"), "--minutes", "0.05", "--people", "1", "--edition", "2",
                 "--bvh", str(path), "--bvh-labels", str(csv), "--lidar-beams", "16", "--quiet")
    assert ok.returncode == 0, ok.stderr
    seq = Store(tmp_path / "s").read("scene0000/person_1")
    assert seq.attrs["source"] == "bvh" and (seq.labels == 1).mean() > 0.9
    alone = run_cli("synth", "--out", str(tmp_path / "t"), "--bvh-labels", str(csv), "--quiet")
    assert alone.returncode == 2 and "give --bvh too" in alone.stderr
    csv.write_text("file,start_s,end_s,label\nother.bvh,0,1,run\n")
    none = run_cli("synth", "--out", str(tmp_path / "u"), "--bvh", str(path), "--bvh-labels", str(csv), "--quiet")
    assert none.returncode == 2 and "no row of" in none.stderr
    csv.write_text("file,start_s,end_s,label\nwalk.bvh,0,1,dance\n")
    bad = run_cli("synth", "--out", str(tmp_path / "v"), "--edition", "2", "--bvh", str(path),
                  "--bvh-labels", str(csv), "--quiet")
    assert bad.returncode == 2 and "'dance'" in bad.stderr and "not a class of edition 2" in bad.stderr


def test_mocap_seams_and_turns_stay_smooth_where_labelled(tmp_path):
    """Where a repetition continues the last (blended pose, eased turn) the body neither flies nor spins:
    root speed stays near the clip's, and no labelled sample's IMU turns faster than the clip's own motion."""
    path = _walking_clip(tmp_path, seconds=1.0, speed_cm=150.0)
    cfg = small_config(minutes=0.5, scene_minutes=0.5, people=1, bvh=(str(path),), edition=2,
                       bvh_labels=(((0.0, 2.0, "walk"),),))
    person = build_scene(cfg, 0, 30.0).people[0]
    root = person.kin.positions[:, 0, :2]
    speed = np.linalg.norm(np.diff(root, axis=0), axis=1) * cfg.imu.rate
    labelled = person.seg_index[1:] >= 0
    assert labelled.mean() > 0.8
    assert speed[labelled].max() < 1.5 * 1.5                    # 1.5 m/s clip: turns do not swing the body
    heading = np.unwrap([_yaw(r) for r in person.kin.rotations[:, 0]])
    assert np.ptp(heading) > np.pi / 2                          # it did turn, away from walls
    yaw_rate = np.abs(np.diff(heading)) * cfg.imu.rate
    assert yaw_rate[labelled].max() < 2.0 * np.pi / 2 * 1.1     # eased in: TURN_RATE (2 rad/s) on average
    gyro = np.linalg.norm(person.imu_ideal.gyro, axis=-1)[1:]   # (N, sites)
    assert gyro[labelled].max() < 6.0                          # nothing spins at a seam


def _yaw(r):
    return float(np.arctan2(r[1, 0], r[0, 0]))


def test_bvh_label_rows_after_the_clip_are_refused(tmp_path):
    path = _walking_clip(tmp_path)
    csv = tmp_path / "labels.csv"
    csv.write_text("file,start_s,end_s,label\nwalk.bvh,0,0.5,walk\nwalk.bvh,5,6,run\n")
    late = run_cli("synth", "--out", str(tmp_path / "s"), "--edition", "2", "--bvh", str(path),
                   "--bvh-labels", str(csv), "--quiet")
    assert late.returncode == 2 and "start at or after the end of walk.bvh" in late.stderr


def test_people_keep_apart_and_start_apart():
    """Bodies do not overlap: a later person's walking steps avoid those placed before, a person who
    is walked up to steps aside, and everyone starts START_GAP from the others (people used to be
    placed independently: two could stand 0.2 m apart, one LiDAR cluster)."""
    from despite_core.data.synth.world import PERSON_GAP, START_GAP
    from despite_core.evaluate.perception import world_config

    for kind, seeds, worst in (("4 people", (1, 2, 3, 4), 0.0), ("8 people", (1, 2), 0.001)):
        for seed in seeds:
            scene = build_scene(world_config(kind, seed, 30.0), 0, 30.0)
            xy = np.stack([q.kin.positions[:, 0, :2] for q in scene.people])          # (P, N, 2) pelvis
            gap = np.linalg.norm(xy[:, None] - xy[None], axis=-1)[np.triu_indices(len(xy), 1)]
            assert gap[:, 0].min() >= START_GAP - 0.2, (kind, seed, gap[:, 0].min())   # pelvis vs root
            assert (gap < PERSON_GAP - 0.1).mean() <= worst, (kind, seed, (gap < PERSON_GAP - 0.1).mean())
