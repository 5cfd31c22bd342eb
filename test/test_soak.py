"""The short soak of CI: `despite-ros bench soak --minutes 1` at light settings (10 Hz, 32 beams,
2 people, 2 wearers x 4 IMUs at 100 Hz). Correctness, not speed: what is asserted holds on a fast or
a loaded machine alike. Both nodes are alive at the end and exit cleanly; har_node produced outputs
and matching_node received IMU samples and matched batches (at least one each, not a rate); every
drop counter of each node (despite_ros.soak.DROPS) is reported, by cause, from the node's own
diagnostics; the counters of bad or out-of-order input (invalid, undecodable, duplicate, backwards,
bad stamps, late IMU, bad embeddings, errors) stay at 0 on this clean input (the counters that
follow load, missing periods, held stamps and stale batches, are reported, not bounded); both
nodes' RSS is reported and does not climb (slope under 20 MB/min after the first 30 s; measured
about 0.1). Throughput (outputs per scan, IMU received against sent Hz) and latency are in the
soak's own table, not asserted here; the 10-minute figures (20 Hz, 128 beams, 4 people, 4 wearers)
are in the README: `despite-ros bench soak --minutes 10`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers.ros_env import ros_env

from despite_ros.soak import DROPS

BIN = Path(sys.prefix) / "bin" / "despite-ros"
NODES = ("har_node", "matching_node")
# the counters that can only move on bad or out-of-order input, never under load alone
CLEAN_ZERO = {"har_node": ("invalid", "decode_errors", "duplicates", "backwards", "bad_stamps", "errors"),
              "matching_node": ("invalid", "late", "duplicate", "backwards", "bad_embeddings", "errors")}


def test_one_minute_soak(tmp_path):
    out = subprocess.run([str(BIN), "bench", "soak", "--minutes", "1", "--rate", "10", "--beams", "32", "--people", "2",
                          "--wearers", "2", "--out", str(tmp_path / "soak.json")], env=ros_env(tmp_path), cwd=tmp_path,
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    r = json.loads((tmp_path / "soak.json").read_text())
    assert r["nodes_alive"] and all(c in (0, -2) for c in r["exit_codes"].values()), r["exit_codes"]
    assert set(r["exit_codes"]) == set(NODES)
    (m,) = r["per_minute"]
    assert m["scans_sent"] > 0 and m["outputs"] > 0 and r["outputs"] > 0, m
    diag = r["diagnostics"]
    assert int(diag["matching_node"]["imu"]) > 0 and int(diag["matching_node"]["batches"]) > 0, diag["matching_node"]
    for node in NODES:
        drops = m[f"{node}_drops"]                            # by cause, from the node's own diagnostics
        assert set(drops) == set(DROPS[node]), (node, sorted(drops))
        assert all(isinstance(v, int) and v >= 0 for v in drops.values()), (node, drops)
        assert {k: drops[k] for k in CLEAN_ZERO[node]} == dict.fromkeys(CLEAN_ZERO[node], 0), (node, drops)
        assert m[f"{node}_rss_mb"] > 0 and r["rss_mb_last"][node] > 0, (node, m, r["rss_mb_last"])
    assert set(r["rss_slope_mb_per_min"]) == set(NODES)
    assert all(s is not None and abs(s) < 20 for s in r["rss_slope_mb_per_min"].values()), r["rss_slope_mb_per_min"]
    assert "| 1 |" in out.stdout and "RSS slope" in out.stdout
