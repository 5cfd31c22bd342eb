"""The short soak of CI: `despite-ros bench soak --minutes 1` at light settings (10 Hz, 32 beams,
2 people, 2 wearers x 4 IMUs at 100 Hz). Correctness, not speed: both nodes survive and keep
producing, memory does not climb (RSS slope under 20 MB/min after the first 30 s; measured about
0.1), every drop is attributed to a cause. The 10-minute figures (20 Hz, 128 beams, 4 people, 4
wearers) are in the README: `despite-ros bench soak --minutes 10`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers.ros_env import ros_env

BIN = Path(sys.prefix) / "bin" / "despite-ros"


def test_one_minute_soak(tmp_path):
    out = subprocess.run([str(BIN), "bench", "soak", "--minutes", "1", "--rate", "10", "--beams", "32", "--people", "2",
                          "--wearers", "2", "--out", str(tmp_path / "soak.json")], env=ros_env(tmp_path), cwd=tmp_path,
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    r = json.loads((tmp_path / "soak.json").read_text())
    assert r["nodes_alive"] and all(c in (0, -2) for c in r["exit_codes"].values()), r["exit_codes"]
    (m,) = r["per_minute"]
    assert m["outputs"] > 0.5 * m["scans_sent"] / 3          # windows every 3 scans; most arrive
    assert m["matching_node_imu_received_hz"] > 0.5 * m["imu_sent_hz"]
    assert all(abs(s) < 20 for s in r["rss_slope_mb_per_min"].values()), r["rss_slope_mb_per_min"]
    for node in ("har_node", "matching_node"):
        assert isinstance(m[f"{node}_drops"], dict)           # by cause, from the node's own diagnostics
    assert "| 1 |" in out.stdout and "RSS slope" in out.stdout
