"""Temporal fusion on held-out scenes: window accuracy without and with fusion, segment F1, event
delay, and the stand-in alert sequence, for a grid of fusion settings (the model runs once per bag;
every setting rescores the same window scores with despite_core.runtime.fusion and the fixed
scoring rules of despite_core.runtime.scoring).

    .venv/bin/python bench/fusion_sweep.py runs/fusion/bags/s30[1-4] --segmentation ground-truth \
        --out runs/fusion/dev_gt.json          # development scenes: choose the setting
    .venv/bin/python bench/fusion_sweep.py runs/fusion/bags/s4* --only 0.3,0.6 --out runs/fusion/test_gt.json

Prints a markdown table (one row per setting: pooled over the bags) and, for ``--only``, per bag.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np


def raw_segments(batches, names: list[str]) -> list:
    """Without fusion: a segment per run of equal window labels of a track (what a user of the raw
    labels would see), dated like the fused ones (a change starts at its first window's centre)."""
    from despite_core.runtime.fusion import ActivityEvent

    runs: dict[int, list] = {}                     # track -> [label, start, last newest stamp]
    events = []
    for _, batch in batches:
        for tid, st, sc, *_ in batch:
            k, centre, newest = int(np.argmax(sc)), int((st[0] + st[-1]) // 2), int(st[-1])
            cur = runs.get(tid)
            if cur is None or cur[0] != k:
                start = int(st[0]) if cur is None else centre
                if cur is not None:
                    events.append(ActivityEvent(tid, names[cur[0]], cur[0], 0.0, cur[1], start, False, cur[2]))
                runs[tid] = [k, start, newest]
                events.append(ActivityEvent(tid, names[k], k, 0.0, start, 0, True, newest))
            else:
                cur[2] = newest
    for tid, (k, start, last) in runs.items():
        events.append(ActivityEvent(tid, names[k], k, 0.0, start, max(last, start + 1), False, last))
    return events


def rescore(kept: list[dict], cfg, names: list[str]) -> dict:
    """Pool every bag's windows and segments under one fusion setting."""
    from despite_core.runtime.fusion import ActivityFusion
    from despite_core.runtime.scoring import Scoreboard, fusion_metrics

    per_bag, boards, segs = [], Scoreboard(list(names)), {"true": 0, "pred": 0, "match": 0, "delays": []}
    alerts = {"instances": 0, "hits": 0.0, "false": 0, "hours": 0.0}
    for k in kept:
        fusion = ActivityFusion(list(names), config=cfg) if cfg is not None else None
        board, events = Scoreboard(list(names)), []
        for stamp, batch in k["batches"]:
            if fusion is not None:
                fused, ev = fusion.update(stamp, [(t, st, sc, cen, ext) for t, st, sc, _, _, cen, ext in batch])
                events += ev
            for i, (tid, st, sc, person, labels, *_) in enumerate(batch):
                raw = int(np.argmax(sc))
                pred, conf = (fused[i].class_id, fused[i].confidence) if fusion is not None else (raw, float(sc[raw]))
                for b in (board, boards):
                    b.score_window(int(st[-1]), tid, person, labels, pred, conf, raw=raw)
        if fusion is not None:
            events += fusion.flush()
        else:
            events = raw_segments(k["batches"], names)
        m = fusion_metrics(k["ground_truth"], board.records, events, cfg.alert_sequence if cfg else ())
        a = m["alerts"] or {}
        per_bag.append({"bag": k["bag"], "accuracy_raw": board.accuracy_raw, "accuracy": board.accuracy,
                        "segment_f1": m["segment_f1"], "event_delay_s_median": m["event_delay_s_median"],
                        "windows": board.windows, "alert_instances": a.get("instances"),
                        "alert_hits": round((a.get("alert_recall") or 0) * (a.get("instances") or 0)),
                        "false_alarms": a.get("false_alarms"), "alert_delay_s_median": a.get("alert_delay_s_median")})
        segs["true"] += m["true_segments"]
        segs["pred"] += m["predicted_segments"]
        segs["match"] += m["matched_segments"]
        if m["alerts"]:
            a = m["alerts"]
            alerts["instances"] += a["instances"]
            alerts["hits"] += (a["alert_recall"] or 0) * a["instances"]
            alerts["false"] += a["false_alarms"]
            alerts["hours"] += a["hours"]
            if a["alert_delay_s_median"] is not None:
                alerts.setdefault("delays", []).append(a["alert_delay_s_median"])
    p = segs["match"] / segs["pred"] if segs["pred"] else 0.0
    r = segs["match"] / segs["true"] if segs["true"] else 0.0
    f1s = [b["segment_f1"] for b in per_bag if b["segment_f1"] is not None]
    delays = [b["event_delay_s_median"] for b in per_bag if b["event_delay_s_median"] is not None]
    return {"accuracy_raw": boards.accuracy_raw, "accuracy": boards.accuracy, "windows": boards.windows,
            "segment_precision": round(p, 4), "segment_recall": round(r, 4),
            "segment_f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
            "segment_f1_per_bag_min": min(f1s) if f1s else None, "segment_f1_per_bag_max": max(f1s) if f1s else None,
            "event_delay_s_median_of_bags": float(np.median(delays)) if delays else None,
            "alerts": alerts if alerts["instances"] or alerts["false"] else None, "per_bag": per_bag}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bags", nargs="+", type=Path)
    ap.add_argument("--model", type=Path, default=None, help="bundle (default: the installed models/default)")
    ap.add_argument("--segmentation", choices=("live", "ground-truth"), default="ground-truth")
    ap.add_argument("--rates", default="0.05,0.1,0.2,0.3,0.5,1.0", help="switch_rate values (changes / s)")
    ap.add_argument("--sharpness", default="0.3,0.45,0.6,0.8,1.0", help="sharpness values")
    ap.add_argument("--only", default=None, metavar="RATE,SHARPNESS", help="just this setting (and no fusion)")
    ap.add_argument("--alert-sequence", default="fall,lying", help="alert sequence scored (comma-separated)")
    ap.add_argument("--alert-min-drop", type=float, default=None, metavar="M",
                    help="the alert's body-down check: alert_min_drop_m (default FusionConfig's; 0 = labels alone)")
    ap.add_argument("--alert-down-s", type=float, default=None, metavar="S",
                    help="alert_down_s (default FusionConfig's; 0 = wait for the fused last label)")
    ap.add_argument("--alert-min-length", type=float, default=None, metavar="M",
                    help="alert_min_length_m, the early path's body length along the floor (default FusionConfig's)")
    ap.add_argument("--labels-only-alert", action="store_true",
                    help="with --only: also the alert on the labels alone (alert_min_drop_m 0), as the last row")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from despite_core.runtime.fusion import FusionConfig
    from despite_core.runtime.inference import default_bundle_path
    from despite_ros.bag_eval import evaluate_offline

    model = args.model or default_bundle_path()
    seq = tuple(s.strip() for s in args.alert_sequence.split(",") if s.strip())
    alert = {k: v for k, v in (("alert_min_drop_m", args.alert_min_drop), ("alert_down_s", args.alert_down_s),
                               ("alert_min_length_m", args.alert_min_length)) if v is not None}
    kept = []
    for bag in args.bags:
        print(f"[fusion_sweep] {bag}: running the pipeline ({args.segmentation} segmentation)", file=sys.stderr)
        res = evaluate_offline(bag, model, segmentation=args.segmentation, fusion=None, keep_batches=True, progress=False)
        kept.append({"bag": str(bag), "batches": res["batches"], "ground_truth": res["ground_truth"]})
        names = res["class_names"]
    if args.only:
        r, s = (float(x) for x in args.only.split(","))
        grid = [(r, s)]
    else:
        grid = list(itertools.product([float(x) for x in args.rates.split(",")],
                                      [float(x) for x in args.sharpness.split(",")]))
    rows = [{"switch_rate": None, "sharpness": None, **rescore(kept, None, names)}]
    for r, s in grid:
        rows.append({"switch_rate": r, "sharpness": s,
                     **rescore(kept, FusionConfig(switch_rate=r, sharpness=s, alert_sequence=seq, **alert), names)})
    if args.labels_only_alert and args.only:
        r, s = grid[0]
        rows.append({"switch_rate": r, "sharpness": s, "alert": "labels only",
                     **rescore(kept, FusionConfig(switch_rate=r, sharpness=s, alert_sequence=seq,
                                                  **{**alert, "alert_min_drop_m": 0.0}), names)})
    print(f"bags: {', '.join(str(b) for b in args.bags)}; segmentation: {args.segmentation}\n")
    print("| switch rate /s | sharpness | window acc. raw | fused | segment P | R | F1 (bags min-max) | "
          f"median event delay s | alerts ({' then '.join(seq)}): found / instances, false alarms in person-hours, "
          "median delay s (of bags) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        a = row["alerts"]
        al = (f"{round(a['hits'])} / {a['instances']}, {a['false']} in {a['hours']:.2f} h "
              f"({a['false'] / a['hours']:.1f} /h), "
              f"{np.median(a['delays']) if a.get('delays') else float('nan'):.2f}" if a and a["hours"] else "-")
        if row.get("alert"):
            al = f"{row['alert']}: {al}"
        f = lambda v, spec=".3f": "-" if v is None else format(v, spec)  # noqa: E731
        print(f"| {f(row['switch_rate'], 'g')} | {f(row['sharpness'], 'g')} | {f(row['accuracy_raw'])} | "
              f"{f(row['accuracy'])} | {f(row['segment_precision'])} | {f(row['segment_recall'])} | "
              f"{f(row['segment_f1'])} ({f(row['segment_f1_per_bag_min'], '.2f')}-{f(row['segment_f1_per_bag_max'], '.2f')}) | "
              f"{f(row['event_delay_s_median_of_bags'], '.2f')} | {al} |")
    if args.only:
        print("\n| bag | windows | raw | fused | segment F1 | median delay s | alerts found / instances | false alarms "
              "| alert delay s |\n|---|---|---|---|---|---|---|---|---|")
        for b in rows[1]["per_bag"]:
            print(f"| {Path(b['bag']).name} | {b['windows']} | {b['accuracy_raw']:.3f} | {b['accuracy']:.3f} | "
                  f"{b['segment_f1']} | {b['event_delay_s_median']} | {b['alert_hits']} / {b['alert_instances']} | "
                  f"{b['false_alarms']} | {b['alert_delay_s_median']} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
