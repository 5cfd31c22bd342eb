"""The before/after table of bench/own_recordings.sh: bag-eval on the held-out bags for the shipped
model and each fine-tuned bundle, windows pooled over the bags (confusion matrices summed), with
the per-bag spread. Prints Markdown (the README's table) and writes RUNS/table.json.

    .venv/bin/python bench/own_recordings_table.py runs/own
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def pooled(results: list[dict]) -> dict:
    conf = np.sum([np.asarray(r["confusion"], np.int64) for r in results], axis=0)
    names = results[0]["class_names"]
    present = conf.sum(1) > 0
    recall = np.diag(conf)[present] / conf.sum(1)[present]
    per_bag = [r["accuracy"] for r in results if r["accuracy"] is not None]
    return {"windows": int(conf.sum()), "accuracy": float(np.trace(conf) / max(conf.sum(), 1)),
            "macro_recall": float(recall.mean()) if len(recall) else None,
            "accuracy_raw": float(np.mean([r["accuracy_raw"] for r in results if r.get("accuracy_raw") is not None])),
            "per_bag": [round(a, 3) for a in per_bag],
            "per_class_recall": {n: round(float(conf[i, i] / conf[i].sum()), 3)
                                 for i, n in enumerate(names) if conf[i].sum()},
            "coverage": _over_truth(results, "coverage"), "recall": _over_truth(results, "recall")}


def _over_truth(results: list[dict], key: str) -> float | None:
    """A live-vs-truth share pooled over the bags' ground-truth person-windows; None without them."""
    if not all(r.get(key) is not None and r.get("truth_windows") for r in results):
        return None
    n = sum(r["truth_windows"] for r in results)
    return float(sum(r[key] * r["truth_windows"] for r in results) / n)


def main(root: Path) -> None:
    rows = {}
    for model_dir in sorted((root / "eval").iterdir()):
        for seg in ("ground-truth", "live"):
            files = sorted((model_dir / seg).glob("*/results.json"))
            if files:
                rows[(model_dir.name, seg)] = pooled([json.loads(f.read_text()) for f in files])
    minutes = {"default": 0}
    for m, _ in rows:
        if m != "default":
            minutes[m] = int(m)
    order = sorted({m for m, _ in rows}, key=lambda m: minutes[m])
    train_s = {}
    for m in order:
        f = root / f"ft{m}" / "metrics.json"
        if f.is_file():
            train_s[m] = sum(e["seconds"] for e in json.loads(f.read_text())["log"])
    print("| model | labelled minutes | GT-seg accuracy (per bag) | GT-seg macro recall | live accuracy (per bag) "
          "| live macro recall | live recall (coverage) | fine-tuning time |")
    print("|---|---|---|---|---|---|---|---|")
    for m in order:
        g, live = rows.get((m, "ground-truth")), rows.get((m, "live"))

        def cell(r, key):
            return "-" if r is None or r[key] is None else f"{r[key]:.3f}"

        def spread(r):
            return "" if r is None or not r["per_bag"] else f" ({min(r['per_bag']):.2f}-{max(r['per_bag']):.2f})"

        name = "shipped default" if m == "default" else f"fine-tuned ({m} min)"
        t = f"{train_s[m] / 60:.1f} min" if m in train_s else "-"
        print(f"| {name} | {minutes[m]} | {cell(g, 'accuracy')}{spread(g)} | {cell(g, 'macro_recall')} | "
              f"{cell(live, 'accuracy')}{spread(live)} | {cell(live, 'macro_recall')} | "
              f"{cell(live, 'recall')} ({cell(live, 'coverage')}) | {t} |")
    (root / "table.json").write_text(json.dumps({f"{m}/{s}": v for (m, s), v in rows.items()}, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/own"))
