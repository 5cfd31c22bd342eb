"""Why a fall alert was missed: each true fall-then-lying instance of the bags, with what the pipeline
saw of that person (live or ground-truth segmentation, the shipped fusion and alert), sorted into one
cause per instance:

- ``found``: an alert named the person in time (alert_metrics' rule);
- ``not seen``: no window of the person from the fall's start to the lying's end (perception);
- ``no fall window``: windows, but none labelled ``fall`` (raw) on the track seen lying;
- ``split``: the person's fall and lying windows are on different tracks (an id change mid-fall);
- ``no lying``: fall windows on the track, but its fused label never completes the sequence and
  the early path never held (the body was not long enough, or not down for ``alert_down_s``);
- ``body not down``: the labels complete the sequence but the body check refuses (drop/height).

    .venv/bin/python bench/fall_misses.py runs/falls_dev/bags/s51[1-6] --segmentation live

Per instance: person, time, windows seen, tracks, raw and fused label runs, body drop / height /
length at the best window. Development scenes only (this is for finding causes, not for figures).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

NS = 1_000_000_000


def runs(seq: list[str]) -> str:
    out: list[list] = []
    for s in seq:
        if out and out[-1][0] == s:
            out[-1][1] += 1
        else:
            out.append([s, 1])
    return " ".join(f"{s}x{n}" for s, n in out)


def diagnose(res: dict, cfg) -> tuple[list[dict], int, int]:
    from despite_core.runtime.fusion import ActivityFusion
    from despite_core.runtime.scoring import alert_metrics, sequence_instances, true_segments

    names = res["class_names"]
    gt = res["ground_truth"]
    fall, lying = names.index(cfg.alert_sequence[0]), names.index(cfg.alert_sequence[1])
    true = true_segments(gt)
    instances = [(a.person, a.start, b.end, a.end) for a, b in sequence_instances(true, [fall, lying])]
    fusion = ActivityFusion(list(names), config=cfg)
    per_window = []            # (stamp, tid, person, raw, fused, drop, height, length)
    alerts = []
    for stamp, batch in res["batches"]:
        fused, events = fusion.update(stamp, [(t, st, sc, cen, ext) for t, st, sc, _, _, cen, ext in batch])
        persons = {t: p for t, _, _, p, *_ in batch}
        for e in events:
            if e.ongoing and e.alert:
                alerts.append((persons.get(e.track_id, 0), e.stamp_ns, e.track_id))
        for (tid, st, sc, person, _, cen, ext), f in zip(batch, fused):
            tr = fusion.tracks.get(tid)
            body = tr.body if tr is not None else []
            drop = (max(b.z for b in body) - body[-1].z) if len(body) >= 2 else float("nan")
            h = body[-1].height if body else float("nan")
            ln = body[-1].length if body else float("nan")
            per_window.append((int(st[-1]), tid, person, int(np.argmax(sc)), f.class_id, drop, h, ln))
    t0 = min((s.start for s in true), default=0)
    out = []
    for person, start, end, fall_end in instances:
        hit = [a for a in alerts if a[0] == person and start <= a[1] <= end + 3 * NS]
        ws = [w for w in per_window if w[2] == person and start <= w[0] <= end + 3 * NS]
        tracks = sorted({w[1] for w in ws})
        lying_tracks = {w[1] for w in ws if w[0] > fall_end}
        fall_tracks = {w[1] for w in ws if w[3] == fall}
        fused_seq = {t: [names[w[4]] for w in ws if w[1] == t] for t in tracks}
        if hit:
            cause = "found"
        elif not ws:
            cause = "not seen"
        elif not fall_tracks:
            cause = "no fall window"
        elif lying_tracks and not (fall_tracks & lying_tracks):
            cause = "split"
        else:
            t = max(fall_tracks, key=lambda t: sum(w[1] == t for w in ws))
            fs = fused_seq[t]
            completes = names[fall] in fs and names[lying] in fs[fs.index(names[fall]):]
            cause = "body not down" if completes else "no lying"
        best = [w for w in ws if w[0] > fall_end] or ws
        out.append({"person": person, "start_s": (start - t0) / NS, "fall_s": (fall_end - start) / NS,
                    "lying_s": (end - fall_end) / NS, "cause": cause, "windows": len(ws), "tracks": tracks,
                    "raw": {t: runs([names[w[3]] for w in ws if w[1] == t]) for t in tracks},
                    "fused": {t: runs(fused_seq[t]) for t in tracks},
                    "body": [(round(w[5], 2), round(w[6], 2), round(w[7], 2)) for w in best[-3:]]})
    # the scoring's own count, printed beside this one's "found" as a cross-check
    m = alert_metrics(true, [(p, s) for p, s, _ in alerts], [fall, lying], 1.0)
    return out, round((m["alert_recall"] or 0) * m["instances"]), m["false_alarms"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bags", nargs="+", type=Path)
    ap.add_argument("--model", type=Path, default=None, help="bundle (default: the installed models/default)")
    ap.add_argument("--segmentation", choices=("live", "ground-truth"), default="live")
    ap.add_argument("--verbose", action="store_true", help="print every instance, not only the missed ones")
    args = ap.parse_args(argv)

    from despite_core.runtime.fusion import FusionConfig
    from despite_core.runtime.inference import default_bundle_path
    from despite_ros.bag_eval.offline import evaluate_offline

    cfg = FusionConfig()
    model = args.model or default_bundle_path()
    total: dict[str, int] = {}
    for bag in args.bags:
        print(f"[fall_misses] {bag}: running the pipeline ({args.segmentation})", file=sys.stderr)
        res = evaluate_offline(bag, model, segmentation=args.segmentation, fusion=None, keep_batches=True,
                               progress=False)
        instances, found, false = diagnose(res, cfg)
        print(f"{bag.name}: alert_metrics finds {found} of {len(instances)}, false alarms {false}")
        for o in instances:
            total[o["cause"]] = total.get(o["cause"], 0) + 1
            if o["cause"] != "found" or args.verbose:
                print(f"{bag.name} person {o['person']} at {o['start_s']:.1f} s (fall {o['fall_s']:.1f} s, lying "
                      f"{o['lying_s']:.1f} s): {o['cause']}; {o['windows']} windows, tracks {o['tracks']}")
                for t in o["tracks"]:
                    print(f"    track {t}: raw {o['raw'][t]}\n             fused {o['fused'][t]}")
                print(f"    body (drop, height, length) at the last windows: {o['body']}")
    print("causes:", ", ".join(f"{k} {v}" for k, v in sorted(total.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
