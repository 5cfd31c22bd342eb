"""Temporal retrieval: within a sequence, each query window of one modality ranks every window of
another modality of the same sequence; a retrieval is correct when the retrieved window starts
within +-k frames of the query (k = 0, 2, 5). Reports recall@1 / recall@5 per tolerance and the
median rank of the exact window (1 = first)."""
from __future__ import annotations

import itertools

import numpy as np

from despite_core.evaluate.embed import Embedded

TOLERANCES = (0, 2, 5)


def evaluate_retrieval(emb: Embedded, tolerances: tuple[int, ...] = TOLERANCES, ks: tuple[int, ...] = (1, 5)) -> dict:
    mods = [m for m in ("imu", "skeleton", "pointcloud") if m in emb.embeddings]
    out: dict = {}
    for src, tgt in itertools.permutations(mods, 2):
        hits = {(t, k): 0 for t in tolerances for k in ks}
        ranks = []
        total = 0
        for s in np.unique(emb.seq):
            rows = np.nonzero(emb.seq == s)[0]
            if len(rows) < 2:
                continue
            sim = emb.embeddings[src][rows] @ emb.embeddings[tgt][rows].T           # (n, n)
            order = np.argsort(-sim, axis=1)                                        # best first
            starts = emb.start[rows]
            dist = np.abs(starts[order] - starts[:, None])                          # frames off, per rank
            ranks.extend((np.argmax(order == np.arange(len(rows))[:, None], axis=1) + 1).tolist())
            total += len(rows)
            for t in tolerances:
                ok = dist <= t
                for k in ks:
                    hits[(t, k)] += int(ok[:, :k].any(axis=1).sum())
        out[f"{src}->{tgt}"] = {
            "queries": total,
            **{f"recall@{k}_pm{t}": hits[(t, k)] / max(total, 1) for t in tolerances for k in ks},
            "median_rank": float(np.median(ranks)) if ranks else float("nan"),
        }
    return out
