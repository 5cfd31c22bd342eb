"""`despite synth`: simulate the world scene by scene and write it out, as a sequence store
(one sequence per person) and/or a rosbag2 MCAP (full scans, IMU, ground truth).

The world itself (people, scenes, the timeline of scans and IMU samples, ground truth) is
:mod:`despite_core.data.synth.world`; the bag writer is :mod:`despite_core.data.synth.bag`. This
module only drives them, so neither of those needs the other's writer.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from despite_core.data.store import SMPL_JOINT_NAMES, StoreWriter
from despite_core.data.synth.bag import SynthBagWriter
from despite_core.data.synth.imu import store_layout
from despite_core.data.synth.world import SceneState, WorldConfig, build_scene, iter_scans, iter_timeline, person_sequence


def generate(config: WorldConfig, out: str | Path | None, *, bag: str | Path | None = None,
             overwrite: bool = False, progress: bool = True, bag_compression: bool = True,
             on_scene: Callable[[SceneState], None] | None = None) -> dict:
    """Simulate the world; write the sequence store at ``out`` and/or a rosbag2 MCAP at ``bag``.

    Returns a JSON-able summary (counts, class histogram, timing).
    """
    from tqdm import tqdm

    if out is None and bag is None:
        raise ValueError("nothing to write: give an output store and/or a bag")
    t_start = time.perf_counter()
    durations = config.scenes
    total_scans = sum(int(np.floor(d * config.lidar.rate + 1e-9)) for d in durations)
    writer = None
    if out is not None:
        writer = StoreWriter(out, config.class_names, imu_layout=store_layout(config.imu.sites),
                             joint_names=SMPL_JOINT_NAMES, source="despite synth",
                             description=f"synthetic world, seed {config.seed}, difficulty {config.difficulty}",
                             overwrite=overwrite)
    bag_writer = None
    if bag is not None:
        bag_writer = SynthBagWriter(bag, config, overwrite=overwrite, compress=bag_compression)
    points_per_frame: list[int] = []
    frame_labels: list[np.ndarray] = []
    subjects: list[str] = []
    bar = tqdm(total=total_scans, unit="scan", desc="despite synth", disable=not progress)
    t_offset = 0.0
    try:
        for index, duration in enumerate(durations):
            scene = build_scene(config, index, duration)
            stamps = scene.stamps
            clouds: dict[int, list[np.ndarray]] = {p.pid: [] for p in scene.people}
            if bag_writer is not None:
                bag_writer.begin_scene(scene)
                events = iter_timeline(scene, full=True, noise_scale=config.difficulty)
            else:  # the store needs person returns only: skip the room and the IMU schedule
                events = ((scan.stamp, "scan", scan)
                          for scan in iter_scans(scene, full=False, noise_scale=config.difficulty))
            for t, kind, payload in events:
                if kind == "scan":
                    for p in scene.people:
                        clouds[p.pid].append(payload.xyz[payload.gt_person == p.pid])
                    bar.update(1)
                if bag_writer is not None:
                    bag_writer.write(scene, t_offset + t, kind, payload)
            for p in scene.people:
                seq = person_sequence(scene, p, stamps, clouds[p.pid], config.imu.sites)
                if writer is not None:
                    writer.add(seq)
                points_per_frame.extend(len(c) for c in clouds[p.pid])
                frame_labels.append(seq.labels)
                subjects.append(p.subject)
            if on_scene is not None:
                on_scene(scene)
            t_offset += duration
        if writer is not None:
            _add_subject_splits(writer, config.seed)
            writer.close()
        if bag_writer is not None:
            bag_writer.close()
    except BaseException:
        if bag_writer is not None:
            bag_writer.abort()                      # no half-written bag left behind
        raise
    finally:
        bar.close()
    labels = np.concatenate(frame_labels) if frame_labels else np.zeros(0, int)
    ppf = np.asarray(points_per_frame)
    return {
        "store": str(out) if out is not None else None, "bag": str(bag) if bag is not None else None,
        "scenes": len(durations), "people_per_scene": config.people, "subjects": len(subjects),
        "scans": total_scans, "person_frames": int(len(ppf)),
        "points_per_person_frame": {"mean": float(ppf.mean()) if ppf.size else 0.0,
                                    "median": float(np.median(ppf)) if ppf.size else 0.0,
                                    "empty_fraction": float((ppf == 0).mean()) if ppf.size else 0.0},
        "class_frames": {name: int((labels == i).sum()) for i, name in enumerate(config.class_names)},
        "unlabelled_frames": int((labels < 0).sum()),
        "seconds": round(time.perf_counter() - t_start, 2),
        "bag_mb": (sum(f.stat().st_size for f in [Path(bag), *Path(bag).rglob("*")] if f.is_file()) / 1e6
                   if bag is not None else None),
    }


def _add_subject_splits(writer: StoreWriter, seed: int) -> None:
    """Split ``by_subject``: whole scenes (all their subjects) go to train / val / test, ~70/10/20.

    Every scene has its own people, so test subjects are never seen in training.
    """
    ids = writer.sequence_ids
    scenes = sorted({sid.split("/")[0] for sid in ids})
    rng = np.random.default_rng([seed, 99])
    order = list(rng.permutation(len(scenes)))
    n = len(scenes)
    n_test = max(1, round(0.2 * n)) if n >= 2 else 0
    n_val = max(1, round(0.1 * n)) if n >= 4 else 0
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    split = {name: [sid for sid in ids if sid.split("/")[0] in {scenes[i] for i in idx}]
             for name, idx in parts.items()}
    writer.add_split("by_subject", split)
