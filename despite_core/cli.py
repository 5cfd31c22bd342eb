"""The `despite` command (offline half): `despite synth`, `despite import <format>`.

Subcommands of the later stages (train, eval, export, bench) join here as they are built; until
then they are not listed rather than stubbed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from despite_core import __version__


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _positive_float(text: str) -> float:
    v = float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return v


def _range_pair(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (e.g. 1.5,1.7), got {text!r}") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"need 0 < LOW <= HIGH, got {text!r}")
    return lo, hi


def _float_list(n: int):
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(x) for x in text.split(","))
        except ValueError:
            values = ()
        if len(values) != n:
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {text!r}")
        return values
    return parse


def add_synth_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth", help="simulate the synthetic multimodal world (LiDAR, IMU, skeleton, text)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Simulate people doing activities in a room, seen by a spinning LiDAR and wearing IMUs. "
            "Writes a sequence store (person-segmented clouds, IMU, SMPL joints, labels, text; "
            "docs/data-format.md) and/or a rosbag2 MCAP bag with full scans, Imu topics and ground truth. "
            "Deterministic for a seed. See docs/synthetic-world.md for what --difficulty scales."))
    p.add_argument("--out", type=Path, help="sequence store directory to write")
    p.add_argument("--bag", type=Path, help="also write a bag: NAME -> rosbag2's layout NAME/NAME_0.mcap + "
                   "metadata.yaml (as `ros2 bag record -o NAME`); NAME.mcap -> that one MCAP file "
                   "(64-beam scans are ~0.9 GB per minute before compression: keep bags short)")
    p.add_argument("--minutes", type=_positive_float, default=1.0, help="total simulated time")
    p.add_argument("--people", type=int, default=2, help="people per scene (1-8)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--difficulty", type=float, default=1.0,
                   help="0 = ideal sensors and similar bodies, 1 = realistic default, 2 = harsh")
    p.add_argument("--scene-minutes", type=_positive_float, default=None,
                   help="length of one scene (new room, new people); default 1, or --minutes when writing a bag")
    p.add_argument("--edition", type=int, default=1, choices=(1, 2),
                   help="world edition: 1 = the 15 base activity classes (what the shipped model knows); "
                        "2 = these + fall, lying (on the floor or a bed), get up (docs/synthetic-world.md)")
    p.add_argument("--lidar-beams", type=int, default=None, choices=(16, 32, 64, 128), help="(default 64)")
    p.add_argument("--lidar-mix", action="store_true",
                   help="draw each scene's LiDAR at random: 16/32/64/128 beams with VLP-16, OS0/OS1 or HDL-like "
                        "fields of view, mounted 0.5-3 m high and pitched down up to 25 deg (a mixed training set)")
    p.add_argument("--lidar-columns", type=int, default=1024, help="azimuth steps per turn")
    p.add_argument("--lidar-rate", type=float, default=10.0, help="scans per second (10 or 20 typical)")
    p.add_argument("--lidar-range-noise", type=float, default=None, help="range noise 1 sigma, m (default 0.02)")
    p.add_argument("--lidar-fov", type=_float_list(2), default=None, metavar="UP,DOWN",
                   help="vertical field of view in degrees (default: +-15 for 16 beams, else +-22.5)")
    p.add_argument("--lidar-dropout", type=float, default=None, help="probability of a missing return (default 0.02)")
    p.add_argument("--lidar-max-range", type=float, default=None, help="maximum range, m (default 60)")
    p.add_argument("--lidar-mount", type=_float_list(3), default=None, metavar="Y,HEIGHT,PITCH",
                   help="fixed mounting on the near wall: lateral offset (m), height (m), downward pitch (deg); "
                        "default: random per scene (height 1.2-2.5 m)")
    p.add_argument("--imu-rate", type=float, default=100.0, help="IMU samples per second")
    p.add_argument("--imu-sites", default=None,
                   help="comma-separated IMU sites (default: LIPD's four; more: head, pelvis, "
                        "left_upper_arm, right_upper_arm, left_thigh, right_thigh)")
    p.add_argument("--untexted", type=float, default=0.2, help="fraction of segments without text")
    p.add_argument("--height-range", type=_range_pair, default=None, metavar="LOW,HIGH",
                   help="draw body statures (m) from this range instead of the default N(1.72, 0.10)")
    p.add_argument("--in-place", action="store_true",
                   help="scenario: nobody walks or runs, so everyone is where the first scan sees them, all along")
    p.add_argument("--distance", type=_range_pair, default=None, metavar="NEAR,FAR",
                   help="scenario: people stay this horizontal distance (m) from the LiDAR (the room is made long enough)")
    p.add_argument("--tall-objects", type=int, default=0, metavar="N",
                   help="scenario: N extra free-standing person-sized objects (cabinets, coat stands) per room")
    p.add_argument("--bvh", type=Path, nargs="+", default=(),
                   help="BVH mocap files that drive persons 1, 2, ... instead of procedural motion (each repeats "
                        "for the whole scene; unlabelled unless --bvh-labels)")
    p.add_argument("--bvh-labels", type=Path, metavar="CSV",
                   help="labels of the --bvh clips: a CSV with the header file,start_s,end_s,label (as `despite "
                        "import bvh --labels`), times in clip seconds, labels from the edition's classes; each "
                        "repetition of a clip gets them")
    p.add_argument("--no-bag-compression", action="store_true", help="write the bag without zstd chunk compression")
    p.add_argument("--figure", type=Path, help="after simulating, plot one window of the store to this PNG")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store / bag")
    p.add_argument("--demo", action="store_true",
                   help="a short 2-person 32-beam scene into build/demo-store with a printed summary (make demo)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from despite_core.data.synth.imu import ImuConfig
    from despite_core.data.synth.lidar import LidarConfig
    from despite_core.data.synth.generate import generate
    from despite_core.data.synth.world import WorldConfig

    if args.demo:
        args.out = args.out or Path("build/demo-store")
        args.minutes, args.people, args.lidar_beams, args.overwrite = 0.5, 2, 32, True
        args.scene_minutes = 0.25
    if args.out is None and args.bag is None:
        raise CliError("despite synth: give --out STORE and/or --bag BAG (or --demo)")
    if args.figure is not None and args.out is None:
        raise CliError("despite synth: --figure plots a window of the store: give --out too")
    for f in args.bvh:
        if not f.is_file():
            raise CliError(f"despite synth: BVH file {f} does not exist")
    if args.bvh:  # parse up front: a broken file fails before any simulation starts
        from despite_core.data.importers.bvh_format import load_bvh
        from despite_core.data.importers.bvh_rig import bvh_to_kinematics

        spans = {}
        for f in args.bvh:
            t = bvh_to_kinematics(load_bvh(f)).times
            spans[f] = float(t[-1] - t[0])
    bvh_labels: tuple = ()
    if args.bvh_labels is not None:
        if not args.bvh:
            raise CliError("despite synth: --bvh-labels labels the --bvh clips: give --bvh too")
        from despite_core.data.importers.bvh import read_label_csv, segments_for
        from despite_core.data.importers.common import ImporterError

        try:
            rows = read_label_csv(args.bvh_labels)
        except ImporterError as e:
            raise CliError(f"despite synth: {e}") from None
        bvh_labels = tuple(tuple((r.start_s, r.end_s, r.label) for r in segments_for(f, rows)) for f in args.bvh)
        if not any(bvh_labels):
            raise CliError(f"despite synth: no row of {args.bvh_labels} names one of the --bvh files "
                           f"({', '.join(f.name for f in args.bvh)})")
        for f, own in zip(args.bvh, bvh_labels):
            late = [f"{a:g}-{b:g} {name}" for a, b, name in own if a >= spans[f]]
            if late:
                raise CliError(f"despite synth: {args.bvh_labels}: row(s) {late} start at or after the end of "
                               f"{f.name} ({spans[f]:.3f} s): times are clip seconds")
            if not own:
                print(f"despite synth: warning: {args.bvh_labels} has no row for {f.name}: its person is unlabelled",
                      file=sys.stderr)
    if args.lidar_mix and (args.lidar_beams is not None or args.lidar_fov is not None):
        raise CliError("despite synth: --lidar-mix draws the beams and field of view per scene: "
                       "drop --lidar-beams / --lidar-fov, or drop --lidar-mix")
    sites = tuple(s.strip() for s in args.imu_sites.split(",")) if args.imu_sites else ImuConfig().sites
    scene_minutes = args.scene_minutes or (args.minutes if args.bag is not None else 1.0)
    try:
        overrides = {"range_noise": args.lidar_range_noise, "dropout": args.lidar_dropout,
                     "max_range": args.lidar_max_range,
                     "fov_up": args.lidar_fov[0] if args.lidar_fov else None,
                     "fov_down": args.lidar_fov[1] if args.lidar_fov else None}
        lidar = replace(LidarConfig(beams=args.lidar_beams or 64), columns=args.lidar_columns, rate=args.lidar_rate,
                        **{k: v for k, v in overrides.items() if v is not None})
        config = WorldConfig(minutes=args.minutes, people=args.people, seed=args.seed, difficulty=args.difficulty,
                             scene_minutes=scene_minutes, lidar=lidar, imu=ImuConfig(rate=args.imu_rate, sites=sites),
                             untexted=args.untexted, bvh=tuple(str(f) for f in args.bvh), bvh_labels=bvh_labels,
                             height_range=args.height_range, mount=args.lidar_mount, in_place=args.in_place,
                             distance=args.distance, tall_objects=args.tall_objects, edition=args.edition,
                             lidar_mix=args.lidar_mix)
    except ValueError as e:
        raise CliError(f"despite synth: {e}") from None
    for path in (args.out, args.bag):
        if path is not None and path.exists() and not args.overwrite:
            raise CliError(f"despite synth: {path} exists; pass --overwrite to replace it")
    summary = generate(config, args.out, bag=args.bag, overwrite=args.overwrite, progress=not args.quiet,
                       bag_compression=not args.no_bag_compression)
    if args.figure is not None:
        from despite_core.data.synth.figure import plot_window

        summary["figure"] = str(plot_window(args.out, args.figure))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(format_summary(summary))
    return 0


def format_summary(s: dict) -> str:
    """Human-readable summary of a synth run."""
    lines = [
        f"despite synth: {s['scenes']} scene(s) x {s['people_per_scene']} people, {s['scans']} scans, "
        f"{s['person_frames']} person-frames in {s['seconds']:.1f} s",
        f"  points per person per scan: mean {s['points_per_person_frame']['mean']:.0f}, "
        f"median {s['points_per_person_frame']['median']:.0f}, "
        f"empty (fully occluded/out of view) {100 * s['points_per_person_frame']['empty_fraction']:.1f} %",
    ]
    if s.get("store"):
        lines.append(f"  sequence store: {s['store']}")
    if s.get("bag"):
        lines.append(f"  rosbag2 (MCAP): {s['bag']} ({s.get('bag_mb', 0):.1f} MB)")
    total = sum(s["class_frames"].values()) + s["unlabelled_frames"]
    lines.append("  frames per activity:")
    for name, n in s["class_frames"].items():
        lines.append(f"    {name:<16} {n:6d}  {100 * n / max(total, 1):5.1f} %")
    if s["unlabelled_frames"]:
        lines.append(f"    {'(unlabelled)':<16} {s['unlabelled_frames']:6d}")
    if s.get("figure"):
        lines.append(f"  figure: {s['figure']}")
    return "\n".join(lines)


def add_import_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="convert ROS 2 bags or a dataset (LIPD+BABEL, MSR-Action3D, BVH) to a sequence store",
                       description="Convert a dataset in its own format into a sequence store (docs/importers.md).")
    fmt = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    from despite_core.data.importers import bvh, lipd, msr, ros2bag

    for name, module, text in (("rosbag", ros2bag, "ROS 2 bags (MCAP or sqlite3): your own LiDAR / IMU recordings"),
                               ("lipd", lipd, "LIPD pickles (+ optional BABEL annotations)"),
                               ("msr", msr, "MSR-Action3D depth .bin files"),
                               ("bvh", bvh, "BVH motion capture (joints only)")):
        q = fmt.add_parser(name, help=text, description=(module.__doc__ or text).strip().splitlines()[0])
        module.add_arguments(q)
        q.set_defaults(func=lambda a, m=module: _run_import(m, a))


def _run_import(module, args: argparse.Namespace) -> int:
    summary = module.run(args)
    print(json.dumps(summary, indent=1))
    return 0


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train DeSPITE encoders (pretrain) or activity heads (har)",
                       description="Training. Multi-process: torchrun --nproc_per_node=N -m despite_core.cli train ...")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    from despite_core.train import options

    q = kinds.add_parser("pretrain", help="contrastive pre-training of a modality subset (DeSPITE, DeSPIE, ...)",
                         description="Contrastive pre-training (docs/method.md). Under torchrun: DistributedDataParallel.",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    options.pretrain_arguments(q)
    q.set_defaults(func=lambda a: _print_result(_lazy("despite_core.train.pretrain").run(a)))
    h = kinds.add_parser("har", help="activity classifier on one modality (scratch, fine-tuned or linear probe)",
                         description="An activity classifier on one modality's encoder features (docs/method.md).",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    options.har_arguments(h)
    h.set_defaults(func=lambda a: _print_result(_har_summary(_lazy("despite_core.train.har").run(a))))
    from despite_core.train import person

    q = kinds.add_parser("person", help="the live perception's person / not-person cluster classifier",
                         description=(person.__doc__ or "").strip().splitlines()[0],
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    person.add_arguments(q)
    q.set_defaults(func=lambda a: _print_result(person.run(a)))


def _lazy(module: str):
    """Import a torch-using module only when its command runs."""
    import importlib

    return importlib.import_module(module)


def _har_summary(result: dict) -> dict:
    t = result["test"]
    return {k: result[k] for k in ("modality", "init", "freeze", "label_fraction", "train_windows", "test_windows")} | {
        "accuracy": t["accuracy"], "macro_f1": t["macro_f1"], "segment_accuracy": t.get("group_accuracy")}


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate: cross-modal matching, temporal retrieval, activity recognition")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    from despite_core.evaluate import commands

    commands.add_arguments(kinds)
    for name, sp in kinds.choices.items():
        sp.set_defaults(func=lambda a, f=sp.get_default("func"): _print_result(f(a)))


def _print_result(result: dict) -> int:
    if result:
        print(json.dumps({k: v for k, v in result.items() if k != "history"} | (
            {"last_epoch": result["history"][-1]} if result.get("history") else {}), indent=1))
    return 0


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a model bundle (model.yaml + ONNX parts) for the ROS runtime",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Export encoders (and linear-probe HAR heads) to ONNX with parity checks "
                                   "against PyTorch on real windows; see shared/ARCHITECTURE.md, 'Model bundle'.")
    p.add_argument("--checkpoint", type=Path, default=None, help="pre-training checkpoint (last.pt)")
    p.add_argument("--base-model", type=Path, default=None, metavar="DIR",
                   help="instead of --checkpoint: the bundle that the --har checkpoints were fine-tuned from "
                        "(despite train har --init DIR); its parts are kept, the fine-tuned ones replaced")
    p.add_argument("--har-part", action="store_true",
                   help="with --base-model: an IMU HAR checkpoint whose encoder differs from the base's (trained from "
                        "scratch for the labels) becomes its own part imu_har beside the base's encoder, which keeps "
                        "serving wearer matching unchanged; without it such an encoder replaces the base's")
    p.add_argument("--out", type=Path, required=True, help="bundle directory")
    p.add_argument("--store", type=Path, required=True, help="store for class names and the parity windows")
    p.add_argument("--har", type=Path, nargs="*", default=[],
                   help="HAR checkpoints trained with --freeze on the same pre-training (one per modality)")
    p.add_argument("--parts", default="pointcloud,imu", help="encoders to export (add skeleton on request)")
    p.add_argument("--text-queries", default=None,
                   help='open-vocabulary labels: "walk = a person walks; sit down; ..." (label = phrase, or a phrase that is its own label)')
    p.add_argument("--text-queries-file", default=None, help="the same, one entry per line ('#' comments)")
    p.add_argument("--matching", type=Path, default=None,
                   help="matching.json of despite eval matching on this checkpoint, copied into model.yaml's metrics")
    p.add_argument("--model-id", default=None)
    p.add_argument("--split-scheme", default="by_subject")
    p.add_argument("--split", default=None,
                   help="split whose windows serve the parity check (default: test; with --base-model: all, every sequence)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--streaming", action="store_true",
                   help="also export the point-cloud encoder as per-frame tube + per-window parts (checked against the monolith)")
    p.set_defaults(func=lambda a: _print_result(_lazy("despite_core.export").run(a)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="despite",
        description="despite: DeSPITE LiDAR / IMU / skeleton / text joint embeddings, offline tools.")
    parser.add_argument("--version", action="version", version=f"despite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_synth_parser(sub)
    add_import_parser(sub)
    add_train_parser(sub)
    add_eval_parser(sub)
    add_export_parser(sub)
    from despite_core import bench

    bench.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, ImportError) as e:
        # Library errors already say what and where; show them without a traceback.
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
