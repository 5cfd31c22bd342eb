"""Property-based fuzzing (hypothesis) of the parsers of outside input on the live path: the
PointCloud2 codec and the sensor_msgs/Imu conversion and buffering. A fixed number of examples
runs in `make test`; DESPITE_FUZZ_EXAMPLES=N runs N per test, randomised, in every fuzz file
(helpers/fuzz.py; the long-run command is in the README's Reliability section).
(The sidecar, bundle and store parsers: test_hostile_inputs.py; the importers: test_fuzz_importers.py.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from despite_core.data.pointcloud2 import PointCloud2Error, decode, decode_fields, decode_points, encode
from despite_core.runtime.buffers import NS, BufferConfig, WearerImu, imu_message_values, to_layout
from despite_core.runtime.inference import default_bundle_path, load_bundle
from helpers.fuzz import fuzz_settings

FUZZ = fuzz_settings(300)
NAMES = ["x", "y", "z", "intensity", "t", "ring", "gt_person", "", "x\x00", "é"]

fields_st = st.lists(st.builds(lambda n, o, d, c: SimpleNamespace(name=n, offset=o, datatype=d, count=c),
                               st.sampled_from(NAMES), st.integers(-4, 40), st.integers(-1, 10), st.integers(-1, 4)),
                     max_size=8)


@st.composite
def clouds(draw):
    fields = draw(fields_st)
    width, height = draw(st.integers(-1, 20)), draw(st.integers(-1, 3))
    point_step = draw(st.integers(-1, 48))
    row_step = draw(st.one_of(st.just(max(point_step, 0) * max(width, 0)), st.integers(-1, 1000)))
    size = draw(st.one_of(st.just(max(height, 0) * max(row_step, 0)), st.integers(0, 2000)))
    data = draw(st.binary(min_size=size, max_size=size))
    return SimpleNamespace(height=height, width=width, fields=fields, is_bigendian=draw(st.booleans()),
                           point_step=point_step, row_step=row_step, data=data, is_dense=draw(st.booleans()))


@FUZZ
@given(clouds(), st.lists(st.sampled_from(NAMES), max_size=3))
def test_pointcloud2_decoders_raise_only_their_error(msg, extra):
    for call in (lambda: decode_points(msg, extra), lambda: decode(msg), lambda: decode_fields(msg, extra or ["x"])):
        try:
            out = call()
        except PointCloud2Error:
            continue
        if isinstance(out, tuple):                               # decode_points: (N, 3) float32 and (N,) extras
            xyz, cols = out
            assert xyz.ndim == 2 and xyz.shape[1] == 3 and xyz.dtype == np.float32
            assert all(c.shape == (len(xyz),) for c in cols.values())


@FUZZ
@given(st.integers(0, 50), st.sampled_from([np.float32, np.float64, np.int16, np.uint8, np.int32]), st.booleans(),
       st.randoms())
def test_pointcloud2_round_trip(n, dtype, bigendian, rnd):
    rng = np.random.default_rng(rnd.randint(0, 2**32))
    arrays = {"x": rng.normal(size=n).astype(np.float32), "y": rng.normal(size=n).astype(np.float32),
              "z": rng.normal(size=n).astype(np.float32), "v": (rng.uniform(0, 100, n)).astype(dtype)}
    fields, step, data = encode(arrays, is_bigendian=bigendian)
    msg = SimpleNamespace(height=1, width=n, fields=fields, is_bigendian=bigendian, point_step=step,
                          row_step=step * n, data=data, is_dense=True)
    xyz, cols = decode_points(msg, ["v"])
    assert np.array_equal(xyz, np.stack([arrays["x"], arrays["y"], arrays["z"]], 1))
    assert np.array_equal(cols["v"], arrays["v"])


LAYOUT = load_bundle(default_bundle_path()).imu_layout
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@FUZZ
@given(st.lists(floats, min_size=4, max_size=4), st.lists(floats, min_size=3, max_size=3),
       st.lists(floats, min_size=3, max_size=3))
def test_imu_conversion_gives_finite_values_or_none(q, g, a):
    v = imu_message_values(q, g, a)
    if v is None:
        return
    assert v.shape == (10,) and np.all(np.isfinite(v)) and abs(np.linalg.norm(v[:4]) - 1) < 1e-9
    out = to_layout(v[None], LAYOUT.__class__(sites=(LAYOUT.sites[0],), channels=LAYOUT.channels,
                                              acc_frame=LAYOUT.acc_frame, gravity=LAYOUT.gravity))
    assert out.shape == (1, LAYOUT.width) and np.all(np.isfinite(out[:, :9]))


@FUZZ
@given(st.lists(st.tuples(st.integers(-10**12, 10**12), st.booleans()), max_size=120))
def test_imu_buffer_stays_ordered_and_bounded(events):
    cfg = BufferConfig(imu_max_samples=64)
    imu = WearerImu(LAYOUT, cfg)
    site = LAYOUT.sites[0]
    ok = np.array([1.0, 0, 0, 0, 0, 0, 0, 0, 0, 9.81])
    for stamp, valid in events:
        status = imu.push(site, int(stamp), ok if valid else None)
        assert status in ("ok", "late", "invalid", "duplicate", "backwards")
        t = [x[0] for x in imu.samples[site]]
        assert t == sorted(t) and len(t) == len(set(t)) and len(t) <= 64
        if t:
            assert t[0] >= t[-1] - int(cfg.imu_horizon * NS)
    stamps = np.array([10**9 + k * 10**8 for k in range(24)], np.int64)
    win, why = imu.window(stamps)                                # never raises, whatever came before
    assert (win is None) == bool(why)


_SETTINGS_OF = r"""
import importlib, inspect, json, sys
out = {}
for name in sys.argv[1:]:
    mod = importlib.import_module(name)
    for fname, fn in vars(mod).items():
        if inspect.isfunction(fn) and hasattr(fn, "hypothesis") and fn.__module__ == name:
            s = getattr(fn, "_hypothesis_internal_use_settings", None)
            out[f"{name}.{fname}"] = None if s is None else [s.max_examples, s.derandomize]
print(json.dumps(out))
"""


def test_every_fuzzer_honours_DESPITE_FUZZ_EXAMPLES(tmp_path):
    """One knob sizes every hypothesis fuzzer in test/ (helpers/fuzz.py): with DESPITE_FUZZ_EXAMPLES
    set, each @given test of each file that imports hypothesis runs that many examples, randomised
    (whole-import fuzzers a quarter of them); unset, each runs its own fixed number, derandomized.
    test_hostile_inputs.py's fuzzers stayed at 150 whatever the variable said."""
    import json
    import re

    here = Path(__file__).resolve().parent
    files = sorted(p.stem for p in here.glob("test_*.py")
                   if re.search(r"^from hypothesis import", p.read_text(), re.M))
    assert {"test_fuzz", "test_hostile_inputs", "test_fuzz_importers"} <= set(files), files

    def settings_of(value: str | None) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "DESPITE_FUZZ_EXAMPLES"}
        # helpers and the test modules first; despite_* as installed (the venv, or a colcon workspace's path)
        env["PYTHONPATH"] = os.pathsep.join([str(here)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        if value is not None:
            env["DESPITE_FUZZ_EXAMPLES"] = value
        out = subprocess.run([sys.executable, "-c", _SETTINGS_OF, *files], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    default, long = settings_of(None), settings_of("4000")
    assert set(default) == set(long) and len(default) >= 20, sorted(default)
    for f in files:
        assert any(k.startswith(f + ".") for k in default), f"{f}: no fuzzer found"
    for test, s in long.items():
        assert s is not None, f"{test}: no settings (hypothesis' defaults ignore DESPITE_FUZZ_EXAMPLES)"
        assert s in ([4000, False], [1000, False]), (test, s)
        assert default[test][1] is True and default[test][0] not in (1000, 4000), (test, default[test])
    assert sum(s[0] == 4000 for s in long.values()) > len(long) / 2
