"""MSR-Action3D depth-map importer: depth videos back-projected to point clouds.

``despite import msr --root DIR --out STORE``

Files ``aXX_sYY_eZZ_sdepth.bin`` (action XX 1..20, subject YY 1..10, take ZZ) anywhere under
``--root``. Format: a little-endian uint32 header (frames, width, height), then
frames x height x width uint32 depths in millimetres, row-major (width fastest); a pixel of
depth 0 has no return. The variant with a skeleton-id byte after each row is not read.

Back-projection (MeteorNet / PST-Transformer convention: focal length 280 px, principal point at
the image centre), for a pixel at column u, row v with depth d > 0:

    z = d / 1000,   x = (u - W/2) / f * z,   y = (v - H/2) / f * z      (metres)

i.e. camera coordinates: x right, y down, z forward (away from the camera). ``--z-up`` rotates
them to our body convention, x forward (= camera z), y left (= -camera x), z up (= -camera y).
"""
from __future__ import annotations

import argparse
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from despite_core.data.importers.common import (
    ImporterError, WarningLog, add_output_arguments, frame_times, progress, store_summary,
    wrap_store_error,
)
from despite_core.data.store import Sequence, StoreError, StoreWriter

MSR_CLASSES = (
    "high arm wave", "horizontal arm wave", "hammer", "hand catch", "forward punch", "high throw",
    "draw x", "draw tick", "draw circle", "hand clap", "two hand wave", "side-boxing", "bend",
    "forward kick", "side kick", "jogging", "tennis swing", "tennis serve", "golf swing",
    "pick up & throw",
)
DEFAULT_FPS = 15.0       # the dataset's stated capture rate; not recorded in the files
FOCAL_PX = 280.0         # as MeteorNet's and PST-Transformer's preprocessing
TRAIN_SUBJECTS = range(1, 6)   # cross-subject protocol: subjects 1-5 train, 6-10 test
TEST_SUBJECTS = range(6, 11)
_NAME = re.compile(r"^a(\d+)_s(\d+)_e(\d+)_sdepth\.bin$", re.IGNORECASE)
_HEADER = 12

# Camera (x right, y down, z forward) -> body convention (x forward, y left, z up).
CAMERA_TO_Z_UP = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def parse_name(path: str | Path) -> tuple[int, int, int]:
    """(action 1..20, subject, take) from an ``aXX_sYY_eZZ_sdepth.bin`` file name."""
    m = _NAME.match(Path(path).name)
    if not m:
        raise ImporterError(f"{path}: file name is not aXX_sYY_eZZ_sdepth.bin")
    try:
        action, subject, take = (int(g) for g in m.groups())
    except ValueError:           # over sys.get_int_max_str_digits() digits
        raise ImporterError(f"{str(path)[:300]}: file name has numbers too long to read") from None
    if not 1 <= action <= len(MSR_CLASSES):
        raise ImporterError(f"{path}: action {action} is outside 1..{len(MSR_CLASSES)}")
    return action, subject, take


def read_depth_bin(path: str | Path) -> np.ndarray:
    """Depth maps (frames, height, width) uint32 millimetres from an MSR-Action3D ``.bin`` file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ImporterError(f"{path}: cannot read ({e.strerror})") from None
    if len(raw) < _HEADER:
        raise ImporterError(f"{path}: {len(raw)} bytes, shorter than the 12-byte header")
    frames, width, height = (int(v) for v in np.frombuffer(raw, "<u4", 3))
    expected = _HEADER + 4 * frames * width * height
    if len(raw) != expected:
        hint = ""
        if len(raw) == _HEADER + frames * height * (4 * width + width):
            hint = " (this matches the variant with a skeleton-id byte per pixel after each row, not supported)"
        raise ImporterError(f"{path}: header says {frames} frames of {width}x{height} pixels, i.e. "
                            f"{expected} bytes, but the file has {len(raw)} bytes{hint}")
    if frames == 0 or width == 0 or height == 0:
        raise ImporterError(f"{path}: header says {frames} frames of {width}x{height} pixels: no data")
    return np.frombuffer(raw, "<u4", frames * height * width, _HEADER).reshape(frames, height, width)


def backproject(depth: np.ndarray, focal_px: float = FOCAL_PX, z_up: bool = False) -> np.ndarray:
    """Points (N, 3) float32 metres of one depth map (H, W) in millimetres; pixels of depth 0 skipped.

    Camera coordinates (x right, y down, z forward), or x forward / y left / z up with ``z_up``.
    Points come in row-major pixel order.
    """
    h, w = depth.shape
    v, u = np.nonzero(depth)
    z = depth[v, u].astype(np.float64) / 1000.0          # mm -> m: the store is in metres
    x = (u - w / 2.0) / focal_px * z
    y = (v - h / 2.0) / focal_px * z
    pts = np.stack([x, y, z], axis=1)
    if z_up:
        pts = pts @ CAMERA_TO_Z_UP.T
    return pts.astype(np.float32)


def convert_file(path: str | Path, *, fps: float = DEFAULT_FPS, focal_px: float = FOCAL_PX,
                 z_up: bool = False, max_points: int | None = None, seed: int = 0) -> Sequence:
    """One depth video as a store sequence; every frame labelled with the file's action.

    ``max_points``: keep at most that many points per frame, a random subset drawn from a
    generator seeded by ``seed`` and the file name (reproducible whatever the import order).
    """
    path = Path(path)
    action, subject, take = parse_name(path)
    depth = read_depth_bin(path)
    rng = np.random.default_rng([seed, zlib.crc32(path.name.encode())])
    points = []
    for frame in depth:
        p = backproject(frame, focal_px, z_up)
        if max_points is not None and len(p) > max_points:
            p = p[np.sort(rng.choice(len(p), max_points, replace=False))]
        points.append(p)
    t = len(points)
    label = action - 1
    seq_id = path.name[: -len("_sdepth.bin")]
    return Sequence(
        sequence_id=seq_id, subject=f"s{subject:02d}", fps=fps, timestamps=frame_times(t, fps),
        labels=np.full(t, label, np.int16), text=np.full(t, MSR_CLASSES[label]),
        points=points, scene=seq_id, person=1,
        attrs={"file": path.name, "action": action, "take": take, "width": int(depth.shape[2]),
               "height": int(depth.shape[1])},
    )


def find_files(root: str | Path) -> list[Path]:
    """Every ``aXX_sYY_eZZ_sdepth.bin`` under ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise ImporterError(f"{root}: MSR-Action3D root is not a directory")
    files = sorted((p for p in root.rglob("*") if p.is_file() and _NAME.match(p.name)), key=lambda p: p.name)
    if not files:
        raise ImporterError(f"{root}: no aXX_sYY_eZZ_sdepth.bin files found")
    seen: dict[str, Path] = {}
    for p in files:
        if p.name.lower() in seen:
            raise ImporterError(f"{root}: {p.name} occurs twice ({seen[p.name.lower()]} and {p})")
        seen[p.name.lower()] = p
    return files


def import_msr(root: str | Path, out: str | Path, *, fps: float = DEFAULT_FPS, focal_px: float = FOCAL_PX,
               z_up: bool = False, max_points: int | None = None, seed: int = 0,
               overwrite: bool = False) -> dict[str, Any]:
    """Import every depth video under ``root`` into a store at ``out``; return the run summary."""
    if not fps > 0:
        raise ImporterError(f"--fps must be positive, got {fps}")
    if max_points is not None and max_points < 1:
        raise ImporterError(f"--max-points must be at least 1, got {max_points}")
    files = find_files(root)
    log = WarningLog()
    log.warn(f"MSR-Action3D frame rate assumed {fps:g} fps (not stored in the files); depth taken as "
             f"millimetres", kind="msr assumptions")
    split: dict[str, list[str]] = {"train": [], "test": []}
    total_points = 0
    frame = "z_up" if z_up else "camera"
    with StoreWriter(out, MSR_CLASSES, source="MSR-Action3D", overwrite=overwrite,
                     description=f"MSR-Action3D depth maps back-projected (f={focal_px:g} px) to points "
                                 f"in metres, {frame} frame") as writer:
        for path in progress(files, desc="MSR-Action3D", unit="file"):
            seq = convert_file(path, fps=fps, focal_px=focal_px, z_up=z_up, max_points=max_points, seed=seed)
            seq.attrs["frame"] = frame
            try:
                writer.add(seq)
            except StoreError as e:
                raise wrap_store_error(path, e) from None
            total_points += sum(len(p) for p in seq.points)
            s = int(seq.subject[1:])
            if s in TRAIN_SUBJECTS:
                split["train"].append(seq.sequence_id)
            elif s in TEST_SUBJECTS:
                split["test"].append(seq.sequence_id)
            else:
                log.warn(f"{path.name}: subject {s} is outside 1..10; left out of the cross_subject split",
                         kind="msr subject outside 1..10")
        writer.add_split("cross_subject", split)
    return store_summary(Path(out), {"format": "msr", "points": total_points, "fps": fps,
                                     "point_frame": frame, "warnings": log.finish()})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``despite import msr``."""
    parser.add_argument("--root", required=True, type=Path,
                        help="folder holding the aXX_sYY_eZZ_sdepth.bin files (searched recursively)")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS,
                        help=f"frame rate of the depth videos (default {DEFAULT_FPS:g}: assumed, not in the files)")
    parser.add_argument("--z-up", action="store_true",
                        help="rotate camera coordinates (x right, y down, z forward) to x forward, y left, z up")
    parser.add_argument("--max-points", type=int, default=None, metavar="N",
                        help="keep at most N random points per frame (default: all, ~10-30k)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --max-points subsampling")
    parser.add_argument("--focal-px", type=float, default=FOCAL_PX,
                        help=f"focal length in pixels for back-projection (default {FOCAL_PX:g})")
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``despite import msr`` from parsed flags; returns the JSON summary."""
    return import_msr(args.root, args.out, fps=args.fps, focal_px=args.focal_px, z_up=args.z_up,
                      max_points=args.max_points, seed=args.seed, overwrite=args.overwrite)
