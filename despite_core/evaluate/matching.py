"""Cross-modal matching, the reference protocol (thkreutz/despite evaluate_matching), seeded.

A scene holds N entries, each ``w`` consecutive windows (stride 1) of a test sequence starting at
a random frame; sequences are drawn with replacement as in the reference (one sequence can give
two entries at different times) but no (sequence, start) twice. Each source entry is assigned to
the target entry with the highest mean cosine similarity over its w windows (an independent
argmax, no one-to-one assignment); a scene's accuracy is the fraction assigned to their own entry;
the figure is the mean over ``scenes`` scenes. Chance is 1/N.

"Same-activity" scenes draw all N entries from windows carrying one label, so a score cannot
come from telling activities apart. A shortcut baseline scores the same scenes with hand-made
features (speed, height, extent, motion energy) instead of embeddings.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from despite_core.evaluate.embed import Embedded

SIZES = (2, 4, 8, 12, 16, 20, 24, 28, 32)
WINDOWS = (1, 2, 4)


@dataclass(frozen=True)
class MatchingConfig:
    sizes: tuple[int, ...] = SIZES
    windows: tuple[int, ...] = WINDOWS
    scenes: int = 1000
    seed: int = 0


def _entries(emb: Embedded, w: int, label: int | None = None) -> np.ndarray:
    """Row indices r such that windows r .. r+w-1 are consecutive windows of one sequence
    (and, when ``label`` is given, all carry that label)."""
    n = len(emb.seq)
    if n < w:
        return np.zeros(0, dtype=np.int64)
    ok = np.ones(n - w + 1, dtype=bool)
    for k in range(1, w):
        ok &= (emb.seq[k:n - w + 1 + k] == emb.seq[: n - w + 1]) & (emb.start[k:n - w + 1 + k] == emb.start[: n - w + 1] + k)
    if label is not None:
        for k in range(w):
            ok &= emb.labels[k:n - w + 1 + k] == label
    return np.nonzero(ok)[0]


def _accuracy(sim: np.ndarray) -> float:
    """Mean over scenes of the fraction of source entries whose argmax target is their own.

    sim (S, N, N): scene, source entry, target entry.
    """
    return float(np.mean(np.argmax(sim, axis=2) == np.arange(sim.shape[1])[None, :]))


def _mean_cos(src: np.ndarray, tgt: np.ndarray, rows: np.ndarray, w: int) -> np.ndarray:
    """Mean over k < w of cos(src[rows + k], tgt[rows + k]) for every pair of entries of every
    scene: rows (S, N) -> (S, N, N)."""
    return np.mean([src[rows + k] @ np.swapaxes(tgt[rows + k], 1, 2) for k in range(w)], axis=0)


def shortcut_scores(emb: Embedded, src: str, tgt: str) -> tuple[np.ndarray, np.ndarray]:
    """Comparable hand-made vectors for a modality pair, z-scored over the split (see embed.shortcut_features)."""
    def z(x):
        return (x - x.mean(0)) / np.maximum(x.std(0), 1e-9)

    a, b = z(emb.shortcut[src]), z(emb.shortcut[tgt])
    if {src, tgt} == {"pointcloud", "skeleton"}:
        return a, b                                   # speed, height, width, height variation: same meaning
    # Against IMU, only "how much it moves" is comparable: speed + height variation vs acceleration energy.
    def energy(x, m):
        return x[:, :1] if m == "imu" else (x[:, :1] + x[:, 3:4]) / 2
    return energy(a, src), energy(b, tgt)


def _shortcut_sim(fa: np.ndarray, fb: np.ndarray, rows: np.ndarray, w: int) -> np.ndarray:
    """Negative squared distance of the window-averaged shortcut vectors: rows (S, N) -> (S, N, N)."""
    va = np.mean([fa[rows + k] for k in range(w)], axis=0)                  # (S, N, F)
    vb = np.mean([fb[rows + k] for k in range(w)], axis=0)
    return -((va[:, :, None, :] - vb[:, None, :, :]) ** 2).sum(-1)


def evaluate_matching(emb: Embedded, config: MatchingConfig = MatchingConfig(), progress: bool = True) -> dict:
    """Accuracy per direction, N, w; learned, shortcut, and same-activity variants."""
    from tqdm import tqdm

    mods = [m for m in ("imu", "skeleton", "pointcloud") if m in emb.embeddings]
    pairs = [(a, b) for a, b in itertools.permutations(mods, 2)]
    rng = np.random.default_rng(config.seed)
    labels = sorted(set(emb.labels[emb.labels >= 0].tolist()))
    results: dict = {"config": {"sizes": list(config.sizes), "windows": list(config.windows), "scenes": config.scenes,
                                "seed": config.seed}, "pairs": {}}
    # Shortcut vectors depend only on the pair: computed once, not per (w, N) setting.
    shortcut = {(a, b): shortcut_scores(emb, a, b) if a in emb.shortcut and b in emb.shortcut else (None, None)
                for a, b in pairs}
    jobs = [(w, n) for w in config.windows for n in config.sizes]
    for w, n in tqdm(jobs, desc="matching", unit="setting", disable=not progress):
        pools = {"all": _entries(emb, w)}
        for lab in labels:
            pools[lab] = _entries(emb, w, lab)
        usable = [lab for lab in labels if len(pools[lab]) >= n]
        scenes = {"all": np.array([rng.choice(pools["all"], n, replace=False) for _ in range(config.scenes)])
                  if len(pools["all"]) >= n else None}
        scenes["same_activity"] = (np.array([rng.choice(pools[lab], n, replace=False)
                                             for lab in rng.choice(usable, config.scenes)]) if usable else None)
        for src, tgt in pairs:
            key = f"{src}->{tgt}"
            r = results["pairs"].setdefault(key, {})
            fa, fb = shortcut[(src, tgt)]
            for variant, rows in scenes.items():
                if rows is None:
                    continue
                entry = {"accuracy": _accuracy(_mean_cos(emb.embeddings[src], emb.embeddings[tgt], rows, w)),
                         "chance": 1.0 / n}
                if fa is not None:
                    entry["shortcut"] = _accuracy(_shortcut_sim(fa, fb, rows, w))
                r.setdefault(variant, {}).setdefault(f"w{w}", {})[f"N{n}"] = entry
    return results


def plot_matching(results: dict, png: str) -> None:
    """Accuracy against N per pair (w = 1 solid, w = 4 dashed; shortcut in grey; chance dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(results["pairs"])
    cols = min(3, len(pairs))
    rows = int(np.ceil(len(pairs) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, key in zip(axes.ravel(), pairs):
        res = results["pairs"][key].get("all", {})
        for w, style in (("w1", "-"), ("w4", "--")):
            if w not in res:
                continue
            ns = sorted(int(k[1:]) for k in res[w])
            ax.plot(ns, [res[w][f"N{n}"]["accuracy"] for n in ns], style, color="tab:blue", label=f"learned {w}")
            if "shortcut" in res[w][f"N{ns[0]}"]:
                ax.plot(ns, [res[w][f"N{n}"]["shortcut"] for n in ns], style, color="gray", label=f"shortcut {w}")
            same = results["pairs"][key].get("same_activity", {}).get(w)
            if same:
                sn = sorted(int(k[1:]) for k in same)
                ax.plot(sn, [same[f"N{n}"]["accuracy"] for n in sn], style, color="tab:orange", label=f"same activity {w}")
        if res:
            ns = sorted(int(k[1:]) for k in next(iter(res.values())))
            ax.plot(ns, [1 / n for n in ns], ":", color="k", label="chance")
        ax.set_title(key)
        ax.set_xlabel("N (entries per scene)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
    axes.ravel()[0].legend(fontsize=7)
    for ax in axes.ravel()[len(pairs):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
