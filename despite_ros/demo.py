"""`despite-ros demo`: the simulated scene (sim_node) and the live pipeline (har_node,
matching_node) as separate processes over DDS, scored live against the simulator's ground truth.

Prints a table once per second (track, true label, predicted (fused) label, confidence, matched
wearer) and the activity events as they arrive (a track's fused segment starting or ending, and
alerts), then the segment scores, the matching accuracy and, as the last line on stdout, ``demo accuracy: 0.NN over N windows``
(despite_core.runtime.scoring: the fixed rules). Exits 1 when no window could be scored.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from despite_ros.bringup import Bringup, plan, share_dir, use_shipped_dds_profile
from despite_ros.live_score import LiveScorer
from despite_core.runtime.buffers import NS
from despite_core.runtime.scoring import GroundTruth, fusion_metrics


def _f(v, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def run_demo(seconds: float, params: Path | None, model: Path | None, seed: int, quiet: bool = False) -> int:
    import rclpy

    from despite_core.runtime.inference import default_bundle_path, load_bundle

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")    # the demo's traffic stays on this machine
    bundle = Path(model) if model else default_bundle_path()
    names = load_bundle(bundle).class_names
    params = Path(params) if params else share_dir() / "config" / "har.yaml"
    args = {"params": str(params), "model": str(bundle)}
    overrides = {"har_node": {"truth_field": "gt_person"}, "sim_node": {"duration": float(seconds), "seed": int(seed)}}
    use_shipped_dds_profile()
    rclpy.init()
    node = rclpy.create_node("despite_demo")
    scorer = LiveScorer(node, GroundTruth(list(names)))
    pipe = Bringup(plan(args, overrides=overrides), stdout=None if not quiet else sys.stderr).start()
    sim = None
    try:
        time.sleep(3.0)                                  # let the pipeline load its model and discover peers
        sim = Bringup(plan({**args, "use_sim": "true"}, overrides=overrides, only=("sim_node",)),
                      stdout=None if not quiet else sys.stderr).start()
        print(f"demo: {seconds:.0f} s of the simulated scene (seed {seed}), model {bundle}", flush=True)
        start = last = time.monotonic()
        while time.monotonic() - start < seconds + 4:
            rclpy.spin_once(node, timeout_sec=0.05)
            if (done := pipe.poll()) is not None:
                print(f"error: {done[0]} exited with code {done[1]}", file=sys.stderr)
                return 2
            if time.monotonic() - last >= 1.0:
                last = time.monotonic()
                scorer.score_ready()
                _print_rows(scorer, last - start)
                _print_events(scorer)
        scorer.score_ready(settle=0.0)
        _print_rows(scorer, time.monotonic() - start)
        _print_events(scorer)
    finally:
        for b in (sim, pipe):
            if b is not None:
                b.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    s = scorer.board.summary()
    seg = fusion_metrics(scorer.gt, scorer.board.records, scorer.closed_events(), ())
    raw = s["accuracy_raw"]
    print(f"fused segments: F1 {_f(seg['segment_f1'])} ({seg['matched_segments']} of {seg['true_segments']} true "
          f"segments, {seg['predicted_segments']} predicted), median event delay {_f(seg['event_delay_s_median'], '.2f')} s; "
          f"window accuracy without fusion {_f(raw, '.2f')}")
    m = s["matching_accuracy"]["overall"]
    print(f"ambiguous windows: {s['ambiguous']}, unassociated: {s['unassociated']}; wearer matching accuracy: "
          f"{'n/a' if m is None else f'{m:.2f}'} over {sum(scorer.board.match_total.values())} assignments")
    n = scorer.board.windows
    print(f"demo accuracy: {scorer.board.accuracy if n else 0:.2f} over {n} windows", flush=True)
    return 0 if n else 1


def _print_rows(scorer: LiveScorer, t: float) -> None:
    if not scorer.rows:
        print(f"t={t:5.1f}s  (waiting for full windows)", flush=True)
        return
    latest = {}
    for r in scorer.rows:
        latest[r[0]] = r
    print(f"t={t:5.1f}s  {'track':>5}  {'true':<16} {'predicted':<16} {'conf':>5}  wearer", flush=True)
    for tid in sorted(latest):
        _, true, pred, conf, wearer = latest[tid]
        print(f"{'':9}{tid:>5}  {true:<16} {pred:<16} {conf:5.2f}  {wearer}", flush=True)
    scorer.rows = []


def _print_events(scorer: LiveScorer) -> None:
    """The events that arrived since the last call, in scene time (s since the first window's scan)."""
    t0 = scorer.first_stamp or 0
    for e in sorted(scorer.new_events, key=lambda e: e.stamp_ns):
        t = lambda ns: (ns - t0) / NS  # noqa: E731
        what = (f"started {e.label!r} at {t(e.start_ns):.1f} s" if e.ongoing
                else f"ended {e.label!r} ({t(e.start_ns):.1f}-{t(e.end_ns):.1f} s)")
        print(f"{'':9}event  track {e.track_id}: {what}, confidence {e.confidence:.2f} (known at {t(e.stamp_ns):.1f} s)"
              f"{'  ** ALERT **' if e.alert else ''}", flush=True)
    scorer.new_events = []
