"""bag-eval's outputs: results.json, windows.csv, confusion / timeline / latency plots, report.html
and a one-image report.png."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from despite_core.runtime.buffers import NS


RESULT_KEYS = ("accuracy", "macro_f1", "windows", "ambiguous", "unassociated", "per_class", "confusion",
               "matching_accuracy", "latency_ms", "dropped", "invalid", "model_id", "bag_sha256",
               "coverage", "recall", "false_tracks_per_minute", "id_switches_per_person_minute",
               "accuracy_raw", "segment_f1", "segment_precision", "segment_recall", "event_delay_s_median", "alerts")


def write_results(result: dict, out: Path) -> dict:
    """results.json, confusion.png, timeline.png, latency.png (replay) and report.html in ``out``."""
    import base64

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from despite_core.evaluate.har import plot_confusion

    out.mkdir(parents=True, exist_ok=True)
    records = result.pop("records", [])
    latencies = result.pop("latencies", [])
    events = result.pop("events", [])
    (out / "results.json").write_text(json.dumps(result, indent=1))
    with (out / "windows.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["stamp_s", "track", "person", "true", "predicted", "raw", "confidence", "outcome"])
        for r in records:
            w.writerow([f"{r['stamp'] / NS:.3f}", r["track"], r["person"], r["true"], r["predicted"], r.get("raw", -1),
                        f"{r['confidence']:.3f}", r["outcome"]])
    with (out / "events.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["stamp_s", "track", "label", "class_id", "confidence", "start_s", "end_s", "ongoing", "alert"])
        for e in events:
            w.writerow([f"{e.stamp_ns / NS:.3f}", e.track_id, e.label, e.class_id, f"{e.confidence:.3f}",
                        f"{e.start_ns / NS:.3f}", f"{e.end_ns / NS:.3f}" if not e.ongoing else "", int(e.ongoing),
                        int(e.alert)])
    names = result["class_names"]
    pngs = []
    if result["confusion"]:
        plot_confusion({"confusion": result["confusion"], "class_names": names, "accuracy": result["accuracy"],
                        "macro_f1": result["macro_f1"]}, str(out / "confusion.png"))
        pngs.append(("confusion.png", "Confusion matrix (windows scored by the fixed rules)"))
    if records:
        tracks = sorted({r["track"] for r in records})
        t0 = min(r["stamp"] for r in records)
        fig, axes = plt.subplots(len(tracks), 1, figsize=(10, 1.6 * len(tracks) + 1), squeeze=False, sharex=True)
        for ax, tid in zip(axes[:, 0], tracks):
            rs = [r for r in records if r["track"] == tid]
            t = [(r["stamp"] - t0) / NS for r in rs]
            ax.plot(t, [r["true"] for r in rs], "k.", ms=6, label="true")
            ax.plot(t, [r["predicted"] if 0 <= r["predicted"] < len(names) else -1 for r in rs], "rx", ms=4,
                    label="predicted")
            ax.set_yticks(range(len(names)), names, fontsize=6)
            ax.set_ylabel(f"track {tid}", fontsize=8)
        axes[0, 0].legend(loc="upper right", fontsize=7)
        axes[-1, 0].set_xlabel("s")
        fig.tight_layout()
        fig.savefig(out / "timeline.png", dpi=90)
        plt.close(fig)
        pngs.append(("timeline.png", "True (dots) vs predicted (crosses) label per track over time"))
    if latencies:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.hist(latencies, bins=30)
        ax.set_xlabel("scan publication -> ActivityArray receipt, ms")
        ax.set_ylabel("windows")
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=90)
        plt.close(fig)
        pngs.append(("latency.png", "Latency histogram"))
    fmt = lambda v: "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    rows = "".join(f"<tr><th>{k}</th><td>{fmt(result.get(k))}</td></tr>" for k in
                   ("accuracy", "accuracy_raw", "segment_f1", "segment_precision", "segment_recall",
                    "event_delay_s_median", "macro_f1", "windows", "ambiguous", "unassociated", "coverage", "recall",
                    "false_tracks_per_minute", "id_switches_per_person_minute", "dropped", "invalid", "model_id",
                    "mode", "segmentation", "scans", "scans_per_second")
                   + (("corrupt_chunks",) if result.get("corrupt_chunks") else ()))
    match = "".join(f"<tr><th>{k}</th><td>{fmt(v)}</td></tr>" for k, v in result["matching_accuracy"].items())
    lat = result.get("latency_ms") or {}
    lat_rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in lat.items())
    imgs = "".join(f"<h2>{title}</h2><img src='data:image/png;base64,"
                   f"{base64.b64encode((out / f).read_bytes()).decode()}'/>" for f, title in pngs)
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>despite bag-eval</title><style>"
            f"body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} th,td{{border:1px solid #ccc;"
            f"padding:3px 8px;text-align:left}}</style></head><body><h1>despite bag-eval</h1>"
            f"<p>bag <code>{result['bag']}</code> (sha256 {result['bag_sha256'][:16]}...)</p>"
            f"<table>{rows}</table><h2>Wearer matching accuracy</h2><table>{match}</table>"
            f"{'<h2>Latency (ms)</h2><table>' + lat_rows + '</table>' if lat_rows else ''}{imgs}</body></html>")
    (out / "report.html").write_text(html)
    _report_png(result, records, latencies, out / "report.png")
    return result


def _report_png(result: dict, records: list, latencies: list, png: Path) -> None:
    """The report's content on one image (for a README or a ticket): figures, confusion, timeline."""
    import matplotlib.pyplot as plt

    names = result["class_names"]
    fig = plt.figure(figsize=(13, 8.5))
    grid = fig.add_gridspec(2, 3, height_ratios=[1, 1.1])
    ax = fig.add_subplot(grid[0, 0])
    ax.axis("off")
    m = result["matching_accuracy"].get("overall")
    lat = result.get("latency_ms")
    fmt = lambda v, spec=".3f": "n/a" if v is None else format(v, spec)  # noqa: E731
    lines = [f"mode: {result['mode']}, segmentation: {result['segmentation']}",
             f"model: {result['model_id']}",
             f"accuracy: {fmt(result['accuracy'])} (without fusion: {fmt(result.get('accuracy_raw'))})",
             f"segment F1: {fmt(result.get('segment_f1'))}  median event delay: {fmt(result.get('event_delay_s_median'), '.2f')} s",
             f"macro-F1: {fmt(result['macro_f1'])}",
             f"windows: {result['windows']}  ambiguous: {result['ambiguous']}  unassociated: {result['unassociated']}",
             f"wearer matching: {fmt(m, '.2f')}",
             f"coverage: {fmt(result.get('coverage'))}  recall: {fmt(result.get('recall'))}",
             f"false tracks/min: {fmt(result.get('false_tracks_per_minute'))}  "
             f"id switches/person/min: {fmt(result.get('id_switches_per_person_minute'))}",
             f"latency p50/p95: {lat['p50']}/{lat['p95']} ms" if lat else "latency: offline run",
             f"scans: {result['scans']}, dropped periods: {result['dropped']}, invalid: {result['invalid']}"
             + (f", corrupt chunks: {result['corrupt_chunks']}" if result.get("corrupt_chunks") else "")]
    ax.text(0, 1, "despite bag-eval\n\n" + "\n".join(lines), va="top", family="monospace", fontsize=9)
    if result["confusion"]:
        conf = np.asarray(result["confusion"], np.float64)
        norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
        ax = fig.add_subplot(grid[0, 1])
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set_title("confusion (rows: true)", fontsize=9)
    if latencies:
        ax = fig.add_subplot(grid[0, 2])
        ax.hist(latencies, bins=30)
        ax.set_xlabel("latency, ms", fontsize=8)
        ax.set_title("scan publication -> labels", fontsize=9)
    if records:
        ax = fig.add_subplot(grid[1, :])
        tracks = sorted({r["track"] for r in records})[:6]
        t0 = min(r["stamp"] for r in records)
        for i, tid in enumerate(tracks):
            rs = [r for r in records if r["track"] == tid]
            t = [(r["stamp"] - t0) / NS for r in rs]
            ax.plot(t, [r["true"] + 0.12 * i for r in rs], ".", ms=5, color=f"C{i}", label=f"track {tid} true")
            ax.plot(t, [(r["predicted"] if 0 <= r["predicted"] < len(names) else -1) + 0.12 * i for r in rs], "x",
                    ms=4, color=f"C{i}", alpha=0.6)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("s")
        ax.set_title("true (dots) vs predicted (crosses) per track", fontsize=9)
        ax.legend(fontsize=7, ncol=6, loc="upper right")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
