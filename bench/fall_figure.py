"""docs/img/fall_window.png: a window of the second edition's world in which a person falls
(clouds, skeletons, IMU traces; despite_core.data.synth.figure.plot_window).

Usage: .venv/bin/python bench/fall_figure.py [--out docs/img/fall_window.png]
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np

from despite_core.data.store import Store
from despite_core.data.synth.figure import plot_window
from despite_core.data.synth.generate import generate
from despite_core.data.synth.lidar import LidarConfig
from despite_core.data.synth.world import WorldConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img/fall_window.png"))
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = WorldConfig(minutes=1.0, scene_minutes=1.0, people=2, seed=args.seed, edition=2,
                          lidar=LidarConfig(beams=64, fov_up=45.0, fov_down=-45.0), mount=(0.0, 2.2, 15.0))
        generate(cfg, Path(tmp) / "s", progress=False)
        st = Store(Path(tmp) / "s")
        fall = st.class_names.index("fall")
        for sid in st.sequence_ids:
            seq = st.read(sid)
            hits = np.flatnonzero(seq.labels == fall)
            if len(hits):
                start = max(int(hits[0]) - 6, 0)             # the window starts just before the fall
                print(plot_window(Path(tmp) / "s", args.out, scene=seq.scene, start_frame=start))
                return
    raise SystemExit(f"no fall in seed {args.seed}; try another --seed")


if __name__ == "__main__":
    main()
