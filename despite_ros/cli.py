"""`despite-ros`: the online half's commands (needs rclpy): bringup, demo, bench."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from despite_ros.bringup import LAUNCH_ARGUMENTS, NODES

    parser = argparse.ArgumentParser(prog="despite-ros", description="despite live pipeline (ROS 2) commands.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    b = sub.add_parser("bringup", help="start the nodes without ros2 launch (the launch file's arguments as flags)",
                       description="Start har_node and matching_node (and sim_node with --use-sim) as processes with the "
                                   "same executables, parameters and remappings as launch/har.launch.py: each flag is "
                                   "the launch argument of the same name (--points-topic X = points_topic:=X).")
    for a in LAUNCH_ARGUMENTS:
        text = a.description + (f" (default: {a.default})" if a.default else "")
        if a.boolean:
            b.add_argument(a.flag, dest=a.name, nargs="?", const="true", default=a.default, metavar="true|false",
                           help=text + "; the flag alone means true")
        else:
            b.add_argument(a.flag, dest=a.name, default=a.default, help=text)
    b.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help=f"override a parameter (NODE one of {list(NODES)}; VALUE read as YAML); repeatable")
    b.set_defaults(func=_bringup)
    d = sub.add_parser("demo", help="simulated scene + live pipeline, scored live against ground truth",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Runs sim_node, har_node and matching_node as processes over DDS (loopback), prints "
                                   "a live table each second and ends with 'demo accuracy: 0.NN over N windows'.")
    d.add_argument("--seconds", type=float, default=30.0, help="simulated seconds")
    d.add_argument("--params", type=Path, default=None, help="parameter YAML (default: the installed config/har.yaml)")
    d.add_argument("--model", type=Path, default=None, help="model bundle (default: the installed models/default)")
    d.add_argument("--seed", type=int, default=7, help="seed of the simulated scene")
    d.add_argument("--quiet-nodes", action="store_true", help="send the nodes' logs to stderr")
    d.set_defaults(func=_demo)
    g = sub.add_parser("bag-eval", help="score the pipeline on a recorded bag (offline or replayed over DDS)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=__import__("despite_ros.bag_eval", fromlist=["x"]).__doc__)
    g.add_argument("bag", type=Path, help="rosbag2 bag directory (MCAP or sqlite3) or .mcap file")
    g.add_argument("--model", type=Path, default=None, help="model bundle (default: the installed models/default)")
    g.add_argument("--out", type=Path, required=True, help="output directory: results.json, plots, report.html")
    g.add_argument("--mode", choices=("offline", "replay"), default="offline",
                   help="offline: in-process, deterministic; replay: publish onto DDS for the running nodes (default: offline)")
    g.add_argument("--segmentation", choices=("live", "ground-truth"), default="live",
                   help="live perception and tracking, or the bag's gt_person field (offline only) (default: live)")
    g.add_argument("--rate", type=float, default=1.0, help="replay speed factor (default: 1.0)")
    g.add_argument("--labels", type=Path, default=None,
                   help="sidecar ground truth (CSV or JSON segments: start, end, label[, person]) instead of "
                        "the bag's /ground_truth/activities")
    g.add_argument("--points-topic", default=NODES["har_node"]["~/input/points"],
                   help="PointCloud2 topic (default: har_node's input remapping, %(default)s)")
    g.add_argument("--imu-topic", default=_yaml_default("matching_node", "imu_topic", "/{wearer}/imu/{site}"),
                   help="Imu topic pattern (default: matching_node's imu_topic in config/har.yaml, %(default)s)")
    g.add_argument("--wearers", default=None, help="comma-separated wearer ids (default: every <wearer> with IMU topics)")
    g.add_argument("--stride", type=int, default=3, help="infer every N selected scans (default: 3)")
    g.add_argument("--record", type=Path, default=None,
                   help="replay: also write the nodes' outputs to this new bag (NAME: NAME/NAME_0.mcap + metadata.yaml "
                        "as `ros2 bag record -o NAME`; NAME.mcap: one MCAP file)")
    g.add_argument("--no-fusion", action="store_true",
                   help="score every window's own label (no temporal fusion, no events, no segment scores)")
    g.add_argument("--alert-sequence", default=None, metavar="LABEL,LABEL",
                   help="fused segment labels that raise an alert, scored as fall alerts (default: har_node's "
                        "alert_sequence in config/har.yaml, fall,lying; the body-down check of config/har.yaml stays on: "
                        "a sequence that is not a fall needs alert_min_drop_m: 0 there)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_bag_eval)
    e = sub.add_parser("bench", help="perception vs Open3D, end-to-end latency at 10/20 Hz with 1/2/4 people",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description=__import__("despite_ros.bench", fromlist=["x"]).__doc__)
    e.add_argument("kind", nargs="?", default="all", choices=("all", "perception", "latency", "soak", "imu-rate"),
                   help="soak: har_node and matching_node driven for --minutes (memory, latency, drops per minute; "
                        "not part of 'all'); imu-rate: matching_node offered rising Imu rates (--imu-hz), received "
                        "vs sent")
    e.add_argument("--seconds", type=float, default=12.0, help="simulated seconds per latency run; imu-rate: seconds "
                                                               "per rate")
    e.add_argument("--imu-hz", default="100,200,400,800,1600", metavar="HZ,HZ",
                   help="imu-rate: the rates per Imu topic offered in turn (wearers x 4 topics)")
    e.add_argument("--minutes", type=float, default=10.0, help="soak: minutes to run")
    e.add_argument("--rate", type=float, default=20.0, help="soak: LiDAR scans per second")
    e.add_argument("--beams", type=int, default=128, help="soak: LiDAR beams (1024 columns)")
    e.add_argument("--people", type=int, default=4, help="soak: people in the scene")
    e.add_argument("--wearers", type=int, default=4, help="soak: wearers, 4 IMUs each at 100 Hz")
    e.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    e.set_defaults(func=_bench)
    return parser


def _bench(args: argparse.Namespace) -> int:
    if args.kind not in ("soak", "imu-rate"):
        return __import__("despite_ros.bench", fromlist=["run"]).run(args.kind, args.seconds, args.out)
    import json

    from despite_ros.soak import imu_rate, imu_rate_table, soak, table

    if args.kind == "imu-rate":
        try:
            rates = [float(x) for x in args.imu_hz.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"--imu-hz {args.imu_hz!r}: expected comma-separated rates in Hz") from None
        result = imu_rate(rates, args.seconds, args.wearers)
        print(imu_rate_table(result))
    else:
        result = soak(args.minutes, args.rate, args.beams, args.people, args.wearers)
        print(table(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    if args.kind == "imu-rate":
        return 0 if all(c in (0, -2) for c in result["exit_codes"].values()) else 1
    return 0 if result["nodes_alive"] else 1


def _yaml_default(node: str, name: str, fallback: str) -> str:
    """A parameter's value in the installed config/har.yaml (the one parameter file of both start-up paths)."""
    import yaml

    from despite_ros.bringup import share_dir

    try:
        return str(yaml.safe_load((share_dir() / "config" / "har.yaml").read_text())[node]["ros__parameters"][name])
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return fallback


def _bringup(args: argparse.Namespace) -> int:
    from despite_ros.bringup import LAUNCH_ARGUMENTS, parse_overrides, plan, run

    return run(plan({a.name: getattr(args, a.name) for a in LAUNCH_ARGUMENTS}, overrides=parse_overrides(args.set)))


def _demo(args: argparse.Namespace) -> int:
    from despite_ros.demo import run_demo

    if args.seconds < 5:
        raise ValueError("--seconds must be at least 5 (a window is 2.4 s, the background learns for 1 s)")
    return run_demo(args.seconds, args.params, args.model, args.seed, quiet=args.quiet_nodes)


def _bag_eval(args: argparse.Namespace) -> int:
    from despite_ros import bag_eval
    from despite_core.runtime.inference import default_bundle_path

    model = args.model or default_bundle_path()
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out}: exists and is not a directory (results.json, plots and report.html "
                         "go into a directory)")
    if not args.out.parent.exists():
        raise ValueError(f"--out {args.out}: its parent directory does not exist")
    bag_eval.imu_pattern(args.imu_topic)               # a bad pattern is named before the run
    wearers = [w.strip() for w in args.wearers.split(",") if w.strip()] if args.wearers else None
    if args.wearers is not None and not wearers:
        raise ValueError("--wearers: no wearer ids given")
    fusion = None if args.no_fusion else _fusion_config(args.alert_sequence)
    if args.mode == "offline":
        if args.record is not None:
            raise ValueError("--record writes what the running nodes publish: use it with --mode replay")
        result = bag_eval.evaluate_offline(args.bag, model, segmentation=args.segmentation, labels=args.labels,
                                           points_topic=args.points_topic, imu_topic=args.imu_topic, wearers=wearers,
                                           stride=args.stride, progress=not args.quiet, fusion=fusion)
    else:
        if args.segmentation != "live":
            raise ValueError("replay drives the live nodes: --segmentation ground-truth is offline only")
        result = bag_eval.evaluate_replay(args.bag, model, rate=args.rate, labels=args.labels,
                                          points_topic=args.points_topic, imu_topic=args.imu_topic, wearers=wearers,
                                          stride=args.stride, record=args.record, progress=not args.quiet,
                                          fusion=fusion)
    result = bag_eval.write_results(result, args.out)
    acc = result["accuracy"]
    print(f"{args.out}/report.html: accuracy {'n/a' if acc is None else f'{acc:.3f}'} over {result['windows']} windows "
          f"({result['ambiguous']} ambiguous, {result['unassociated']} unassociated), "
          f"matching {result['matching_accuracy']['overall']}")
    if result.get("fusion"):
        raw, f1 = result.get("accuracy_raw"), result.get("segment_f1")
        print(f"  without fusion {'n/a' if raw is None else f'{raw:.3f}'}; segments F1 {'n/a' if f1 is None else f'{f1:.3f}'} "
              f"({result['matched_segments']} of {result['true_segments']} true, {result['predicted_segments']} "
              f"predicted), median event delay {result['event_delay_s_median']} s")
    if result.get("corrupt_chunks"):
        print(f"  corrupt chunks: {result['corrupt_chunks']} (their CRC failed: skipped, their messages are not "
              "in the score)")
    return 0


def _fusion_config(alert_sequence: str | None):
    """har_node's fusion parameters from the installed config/har.yaml (one place), as FusionConfig."""
    import yaml

    from despite_core.runtime.fusion import FusionConfig
    from despite_ros.bringup import share_dir

    p = yaml.safe_load((share_dir() / "config" / "har.yaml").read_text())["har_node"]["ros__parameters"]
    seq = (tuple(x.strip() for x in alert_sequence.split(",") if x.strip()) if alert_sequence is not None
           else tuple(p.get("alert_sequence", FusionConfig.alert_sequence)))
    alert = {k: float(p.get(k, getattr(FusionConfig, k)))
             for k in FusionConfig.ALERT_PARAMS}
    return FusionConfig(switch_rate=float(p.get("fusion_switch_rate", FusionConfig.switch_rate)),
                        sharpness=float(p.get("fusion_sharpness", FusionConfig.sharpness)), alert_sequence=seq, **alert)


def _terminate_as_interrupt(signum, frame) -> None:
    """SIGTERM handled as Ctrl-C (KeyboardInterrupt), so every command's clean-up runs."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    import signal

    args = build_parser().parse_args(argv)
    # Ctrl-C works even when started with SIGINT ignored (a background job): a replay then stops,
    # scores and records what it has; bringup stops its nodes. SIGTERM (kill, systemd, docker stop,
    # a CI timeout) does the same: without this it ended the process at once, leaving the nodes it
    # started (in sessions of their own) running as orphans, and no results or recording.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as e:   # BagEvalError, BundleError: ValueErrors
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
