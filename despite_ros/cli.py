"""`despite-ros`: the online half's commands (needs rclpy): bringup, demo, bench."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from despite_ros.bringup import NODES, PIPELINE, share_dir

    parser = argparse.ArgumentParser(prog="despite-ros", description="despite live pipeline (ROS 2) commands.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    b = sub.add_parser("bringup", help="start the nodes with a parameter file, without ros2 launch",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Start har_node and matching_node (and sim_node with --sim) as processes with the "
                                   "same executables, parameters and remappings as launch/har.launch.py.")
    b.add_argument("--params", type=Path, default=share_dir() / "config" / "har.yaml", help="parameter YAML")
    b.add_argument("--sim", action="store_true", help="also start sim_node (the built-in simulated scene)")
    b.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help=f"override a parameter (NODE one of {list(NODES)}); repeatable")
    b.set_defaults(func=lambda a: _bringup(a, PIPELINE))
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
    e = sub.add_parser("bench", help="perception vs Open3D, end-to-end latency at 10/20 Hz with 1/2/4 people",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description=__import__("despite_ros.bench", fromlist=["x"]).__doc__)
    e.add_argument("kind", nargs="?", default="all", choices=("all", "perception", "latency"))
    e.add_argument("--seconds", type=float, default=12.0, help="simulated seconds per latency run")
    e.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    e.set_defaults(func=lambda a: __import__("despite_ros.bench", fromlist=["run"]).run(a.kind, a.seconds, a.out))
    return parser


def _bringup(args: argparse.Namespace, pipeline: tuple[str, ...]) -> int:
    from despite_ros.bringup import parse_overrides, run

    nodes = (("sim_node",) if args.sim else ()) + pipeline
    return run(args.params, nodes, parse_overrides(args.set))


def _demo(args: argparse.Namespace) -> int:
    from despite_ros.demo import run_demo

    if args.seconds < 5:
        raise ValueError("--seconds must be at least 5 (a window is 2.4 s, the background learns for 1 s)")
    return run_demo(args.seconds, args.params, args.model, args.seed, quiet=args.quiet_nodes)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
