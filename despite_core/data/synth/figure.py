"""Figure of one window of a store: clouds coloured by person, skeletons, and the IMU traces."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from despite_core.data.store import Store
from despite_core.data.synth.kinematics import SMPL_PARENTS
from despite_core.data.windows import FPS, WINDOW, cut_window, window_starts

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def plot_window(store_path: str | Path, png: str | Path, scene: str | None = None, start_frame: int | None = None) -> Path:
    """Plot the window starting ``start_frame`` model frames into ``scene`` (default: the first
    scene, the window where its people hold the most points). Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    store = Store(store_path)
    scenes: dict[str, list[str]] = {}
    for sid in store.sequence_ids:
        scenes.setdefault(store.info(sid)["scene"] or sid, []).append(sid)
    scene = scene or next(iter(scenes))
    if scene not in scenes:
        raise ValueError(f"{store_path}: no scene {scene!r}; scenes: {sorted(scenes)[:10]}")
    seqs = [store.read(s) for s in scenes[scene]]
    starts = window_starts(seqs[0].timestamps, length=WINDOW, fps=FPS, stride=4)
    if not len(starts):
        raise ValueError(f"scene {scene!r} is shorter than one window ({WINDOW} frames at {FPS} fps)")
    if start_frame is None:
        counts = [sum(len(p) for s in seqs for p in cut_window(s, t, modalities=("points",)).points) for t in starts]
        start = starts[int(np.argmax(counts))]
    else:
        start = seqs[0].timestamps[0] + start_frame / FPS
    wins = [cut_window(s, float(start), imu_layout=store.imu_layout) for s in seqs]
    mid = WINDOW // 2

    fig = plt.figure(figsize=(17, 6.2))
    ax = fig.add_subplot(1, 3, 1, projection="3d")
    for k, (s, w) in enumerate(zip(seqs, wins)):
        c = COLORS[k % len(COLORS)]
        pts = w.points[mid]
        ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], s=2, c=c, label=f"person_{s.person}: {store.class_names[w.label] if w.label >= 0 else 'ambiguous'}")
        j = w.joints[mid]
        for a, b in enumerate(SMPL_PARENTS):
            if b >= 0:
                ax.plot(*zip(j[a], j[b]), color="k", lw=1.2)
    ax.set_title(f"{scene}, frame {mid} of the window (sensor frame, m)")
    ax.set_xlabel("x"); ax.set_ylabel("y"); ax.set_zlabel("z")
    ax.legend(loc="upper left", fontsize=8)
    _equal_axes(ax, np.concatenate([w.joints[mid] for w in wins]))

    ax2 = fig.add_subplot(1, 3, 2)
    w = wins[0]
    frames = range(0, WINDOW, 4)
    for i, f in enumerate(frames):
        pts = w.points[f] - w.joints[f][0] * [1, 1, 0]
        j = w.joints[f] - w.joints[f][0] * [1, 1, 0]
        off = i * 1.2
        # The view from the sensor (sensor y horizontal, z up), frames side by side.
        ax2.scatter(pts[:, 1] + off, pts[:, 2], s=1.5, c=COLORS[0])
        for a, b in enumerate(SMPL_PARENTS):
            if b >= 0:
                ax2.plot([j[a, 1] + off, j[b, 1] + off], [j[a, 2], j[b, 2]], color="k", lw=0.8)
        ax2.text(off, float(j[:, 2].min()) - 0.25, f"+{f / FPS:.1f} s", ha="center", fontsize=8)
    text = w.text[mid] if w.text is not None and w.text[mid] else "(no text)"
    ax2.set_title(f"person_{seqs[0].person} over the 2.4 s window: \"{text}\"")
    ax2.set_aspect("equal"); ax2.set_xlabel("m"); ax2.set_ylabel("height (m)")

    ax3 = fig.add_subplot(2, 3, 3)
    ax4 = fig.add_subplot(2, 3, 6, sharex=ax3)
    lay = store.imu_layout
    t = w.stamps - w.stamps[0]
    for si, site in enumerate(lay.sites):
        acc = w.imu[:, si, lay.slice("acc")]
        ax3.plot(t, np.linalg.norm(acc, axis=1), label=site)
        if "gyro" in lay.channels:
            ax4.plot(t, np.linalg.norm(w.imu[:, si, lay.slice("gyro")], axis=1), label=site)
    ax3.axhline(9.81, color="gray", lw=0.6, ls="--")
    ax3.set_ylabel("|acc| (m/s²)"); ax3.legend(fontsize=7, ncol=2)
    ax3.set_title(f"person_{seqs[0].person}'s IMUs at the scan stamps (10 Hz)")
    ax4.set_ylabel("|gyro| (rad/s)"); ax4.set_xlabel("time in window (s)")
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def _equal_axes(ax, pts: np.ndarray) -> None:
    c = pts.mean(0)
    r = max(float(np.ptp(pts, axis=0).max()) / 2, 1.0)
    ax.set_xlim(c[0] - r, c[0] + r); ax.set_ylim(c[1] - r, c[1] + r); ax.set_zlim(max(c[2] - r, -3), c[2] + r)
