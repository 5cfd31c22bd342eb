"""Print the README's bag-eval table from the results of bench/bag_eval.sh.

    .venv/bin/python bench/bag_eval_table.py runs/bags
"""
import json
import sys
from pathlib import Path

NAMES = {"b64": "64 beams (training LiDAR)", "b32": "32 beams", "b16": "16 beams",
         "short": "64 beams, statures 1.45-1.60 m", "tall": "64 beams, statures 1.90-2.05 m"}


def main(d: Path) -> None:
    print("| held-out bag (seed 777) | live: accuracy | macro-F1 | windows | unassociated | coverage | recall "
          "| ground-truth seg.: accuracy | macro-F1 | windows | wearer matching (live) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k, name in NAMES.items():
        live = d / f"eval_{k}_live" / "results.json"
        gt = d / f"eval_{k}_ground-truth" / "results.json"
        if not live.is_file() or not gt.is_file():
            continue
        a, b = json.loads(live.read_text()), json.loads(gt.read_text())
        f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"| {name} | {f(a['accuracy'])} | {f(a['macro_f1'])} | {a['windows']} | {a['unassociated']} | "
              f"{f(a.get('coverage'))} | {f(a.get('recall'))} | "
              f"{f(b['accuracy'])} | {f(b['macro_f1'])} | {b['windows']} | {f(a['matching_accuracy']['overall'])} |")
    b32 = d / "eval_b32_live" / "results.json"
    if b32.is_file():
        r = json.loads(b32.read_text())
        print(f"\noffline throughput, 2-minute 2-person 32-beam bag, live segmentation: {r['scans_per_second']} scans/s "
              f"({r['scans']} scans in {r['seconds']} s)")
    rep = d / "replay_b32" / "results.json"
    if rep.is_file():
        r = json.loads(rep.read_text())
        print(f"replay at 1x: latency p50 {r['latency_ms']['p50']} ms, p95 {r['latency_ms']['p95']} ms, "
              f"max {r['latency_ms']['max']} ms; accuracy {r['accuracy']:.3f} over {r['windows']} windows")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bags"))
