"""Markdown tables of the DeSPITE-core results from the run directories of bench/core_experiments.sh.

    .venv/bin/python bench/core_table.py [RUNS_DIR]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

PAIRS = (("imu", "skeleton"), ("pointcloud", "skeleton"), ("pointcloud", "imu"))
NAMES = {"imu": "IMU", "skeleton": "skeleton", "pointcloud": "PC"}


def cell(res: dict, a: str, b: str, variant: str, w: int, n: int, key: str = "accuracy") -> float | None:
    """Mean of both directions a->b and b->a."""
    vals = []
    for s, t in ((a, b), (b, a)):
        e = res["pairs"].get(f"{s}->{t}", {}).get(variant, {}).get(f"w{w}", {}).get(f"N{n}")
        if e and key in e:
            vals.append(e[key])
    return sum(vals) / len(vals) if vals else None


def fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def main() -> None:
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
    print("| pair | preset | N | w | learned | shortcut | same-activity | chance |")
    print("|---|---|---|---|---|---|---|---|")
    for a, b in PAIRS:
        for preset in ("despie", "despite"):
            path = d / f"{preset}_full" / "eval" / "matching.json"
            if not path.is_file():
                continue
            res = json.loads(path.read_text())
            for n in (8, 32):
                for w in (1, 4):
                    print(f"| {NAMES[a]} ↔ {NAMES[b]} | {res['preset']} | {n} | {w} | {fmt(cell(res, a, b, 'all', w, n))} | "
                          f"{fmt(cell(res, a, b, 'all', w, n, 'shortcut'))} | {fmt(cell(res, a, b, 'same_activity', w, n))} | {1 / n:.3f} |")
    print()
    print("| preset | pair | R@1 exact | R@1 ±2 | R@5 ±2 | median rank |")
    print("|---|---|---|---|---|---|")
    for preset in ("despie", "despite"):
        path = d / f"{preset}_full" / "eval" / "retrieval.json"
        if path.is_file():
            r = json.loads(path.read_text())
            for a, b in PAIRS:
                e = r.get(f"{a}->{b}")
                if e:
                    print(f"| {r['preset']} | {NAMES[a]} → {NAMES[b]} | {e['recall@1_pm0']:.3f} | {e['recall@1_pm2']:.3f} | "
                          f"{e['recall@5_pm2']:.3f} | {e['median_rank']:.0f} |")
    print()
    print("| point-cloud HAR, 10 % of labels | accuracy | macro-F1 | segment accuracy |")
    print("|---|---|---|---|")
    for name, label in (("har_scratch", "from scratch"), ("har_despie", "fine-tuned from DeSPIE"),
                        ("har_despite", "fine-tuned from DeSPITE")):
        path = d / name / "metrics.json"
        if path.is_file():
            t = json.loads(path.read_text())["test"]
            print(f"| {label} | {t['accuracy']:.3f} | {t['macro_f1']:.3f} | {t.get('group_accuracy', float('nan')):.3f} |")


if __name__ == "__main__":
    main()
