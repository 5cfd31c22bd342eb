"""Hostile input files for the three parsers of despite_core, each with its own error type:

- label sidecars, ``GroundTruth.from_sidecar`` -> ``LabelError``;
- model bundle metadata, ``load_bundle`` (model.yaml) -> ``BundleError``;
- sequence stores, ``Store`` and its read methods (meta.json, shards, splits) -> ``StoreError``.

Each defect found by review has a regression test; hypothesis then fuzzes each parser and asserts
that it only ever raises its own documented error (never another type's traceback) and never hangs.
"""
from __future__ import annotations

import copy
import json
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, strategies as st
from hypothesis.extra import numpy as hnp

from despite_core.data.imu_layout import ImuLayout
from despite_core.data.store import SMPL_JOINT_NAMES, Sequence, Store, StoreError, StoreWriter
from despite_core.runtime.inference import BundleError, Runtime, StreamingPointEncoder, default_bundle_path, load_bundle
from despite_core.runtime.scoring import NS, SIDECAR_MAX_BYTES, SIDECAR_MAX_S, GroundTruth, LabelError
from helpers.fuzz import fuzz_settings

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)      # libyaml when PyYAML has it: faster
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
FUZZ = fuzz_settings(150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Hang(BaseException):
    """A parser ran past its time limit (a BaseException: no ``except Exception`` may swallow it)."""


@contextmanager
def time_limit(seconds: float):
    def alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------------------------------------
# A. label sidecars
CLASSES = ["walk", "sit", "wave"]


def sidecar(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return p


def test_sidecar_good_csv_and_json_parse(tmp_path):
    want = [(10 * NS, 12_500_000_000, 0, 2), (12_500_000_000, 14 * NS, 1, None)]
    p = sidecar(tmp_path, "a.csv", "start,end,label,person\n10,12.5,walk,person_2\n12.5,14, sit ,\n")
    assert GroundTruth.from_sidecar(p, CLASSES).segments == want
    rows = [{"start": 10, "end": 12.5, "label": "walk", "person": "person_2"},
            {"start": "12.5", "end": 14, "label": "sit", "person": None}]
    p = sidecar(tmp_path, "a.json", json.dumps(rows))
    assert GroundTruth.from_sidecar(p, CLASSES).segments == want


@pytest.mark.parametrize("suffix, key, value, message", [
    (".csv", "end", "inf", "not a finite number"), (".csv", "start", "-inf", "not a finite number"),
    (".csv", "end", "nan", "not a finite number"), (".csv", "start", "nan", "not a finite number"),
    (".csv", "end", "1e300", "outside 0..9.2e"), (".csv", "end", "1" * 400, "not a finite number"),
    (".csv", "start", "-5", "outside 0..9.2e"),
    (".json", "end", "Infinity", "not a finite number"), (".json", "end", "NaN", "not a finite number"),
    (".json", "end", "1e300", "outside 0..9.2e"), (".json", "end", "1e400", "not a finite number"),
    (".json", "end", "1" + "0" * 400, "outside 0..9.2e"), (".json", "start", "-5", "outside 0..9.2e"),
])
def test_sidecar_times_must_be_finite_seconds_in_range(tmp_path, suffix, key, value, message):
    """inf / 1e300 / a 400-digit number overflowed int(); nan failed naming no file or row; a
    negative start was taken."""
    start, end = (value, "4") if key == "start" else ("3", value)
    if suffix == ".csv":
        p = sidecar(tmp_path, "t.csv", f"start,end,label\n1,2,walk\n{start},{end},walk\n")
    else:
        p = sidecar(tmp_path, "t.json", f'[{{"start": 1, "end": 2, "label": "walk"}}, '
                                        f'{{"start": {start}, "end": {end}, "label": "walk"}}]')
    with pytest.raises(LabelError, match=message) as e:
        GroundTruth.from_sidecar(p, CLASSES)
    assert str(e.value).startswith(f"{p}: row 2: {key} ")


def test_sidecar_deeply_nested_json_is_a_label_error(tmp_path):
    p = sidecar(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(LabelError, match="nested too deeply"):
        GroundTruth.from_sidecar(p, CLASSES)


def test_sidecar_with_a_utf8_bom_is_accepted(tmp_path):
    """Spreadsheets write a BOM at the start of a UTF-8 CSV: the first column is still 'start'."""
    p = sidecar(tmp_path, "bom.csv", b"\xef\xbb\xbfstart,end,label\r\n1,2,walk\r\n")
    assert GroundTruth.from_sidecar(p, CLASSES).segments == [(NS, 2 * NS, 0, None)]
    p = sidecar(tmp_path, "bom.json", b'\xef\xbb\xbf[{"start": 1, "end": 2, "label": "wave"}]')
    assert GroundTruth.from_sidecar(p, CLASSES).segments == [(NS, 2 * NS, 2, None)]


@pytest.mark.parametrize("name, content", [("empty.csv", b""), ("header.csv", b"start,end,label,person\n"),
                                           ("blank.csv", b"\n\n\n"), ("bom_header.csv", b"\xef\xbb\xbfstart,end,label\n"),
                                           ("empty.json", b"[]")])
def test_sidecar_without_segments_is_refused(tmp_path, name, content):
    """An empty GroundTruth made callers fall back to the bag's topic silently."""
    p = sidecar(tmp_path, name, content)
    with pytest.raises(LabelError, match=f"^{p}: the label file holds no labelled segments"):
        GroundTruth.from_sidecar(p, CLASSES)


@pytest.mark.parametrize("doc, message", [
    ({"start": 1, "end": 2, "label": "walk"}, r": expected a JSON list of objects .*; got an object$"),
    ("walk", r": expected a JSON list of objects .*; got a string$"),
    ([1], r": row 1: expected an object with start, end \(seconds\) and label; got 1$"),
    (["walk"], r": row 1: expected an object"),
    ([[1, 2, "walk"]], r": row 1: expected an object"),
    ([{"start": 1, "end": 2, "label": "walk"}, None], r": row 2: expected an object"),
    ([{"start": 1, "end": 2, "label": 1}], r": row 1: label must be a class name \(text\)"),
    ([{"start": True, "end": 2, "label": "walk"}], r": row 1: start must be a number of seconds"),
    ([{"start": [1], "end": 2, "label": "walk"}], r": row 1: start must be a number of seconds"),
    ([{"start": 1, "end": 2, "label": "walk", "person": True}], r": row 1: person True is not a person id"),
    ([{"start": 1, "end": 2, "label": "walk", "person": {"id": 1}}], r": row 1: person .* is not a person id"),
])
def test_sidecar_json_is_a_list_of_objects(tmp_path, doc, message):
    p = sidecar(tmp_path, "rows.json", json.dumps(doc))
    with pytest.raises(LabelError, match=message) as e:
        GroundTruth.from_sidecar(p, CLASSES)
    assert str(e.value).startswith(str(p))


@pytest.mark.parametrize("name", ["big.csv", "big.json"])
def test_sidecar_over_the_size_limit_is_refused_unread(tmp_path, name):
    p = tmp_path / name
    with p.open("wb") as f:
        f.truncate(SIDECAR_MAX_BYTES + 1)          # sparse: no disk, no time
    with pytest.raises(LabelError, match=f"^{p}: the label file has {SIDECAR_MAX_BYTES + 1} bytes, more than"):
        GroundTruth.from_sidecar(p, CLASSES)


@pytest.mark.parametrize("name", ["latin1.csv", "latin1.json"])
def test_sidecar_that_is_not_utf8_is_a_label_error(tmp_path, name):
    body = b"start,end,label\n1,2,caf\xe9\n" if name.endswith(".csv") else b'[{"label": "caf\xe9"}]'
    p = sidecar(tmp_path, name, body)
    with pytest.raises(LabelError, match=r"not UTF-8 text \(byte \d+ is b'\\xe9'\)"):
        GroundTruth.from_sidecar(p, CLASSES)


@pytest.mark.parametrize("content, message", [
    (b"start,end,label\n1,2,wa\x00lk\n", r"row 1: label 'wa\\x00lk' is not a class"),
    ("start,end,label\n1,2,walk\n1,2,".encode() + b"x" * 200_000 + b"\n",
     r"row 2: not valid CSV \(field larger than field limit"),
    (b"start,end," + b"x" * 200_000 + b"\n1,2,walk\n", r"the header: not valid CSV \(field larger than field limit"),
])
def test_sidecar_csv_the_csv_module_refuses_is_a_label_error(tmp_path, content, message):
    p = sidecar(tmp_path, "bad.csv", content)
    with pytest.raises(LabelError, match=f"^{p}: {message}"):
        GroundTruth.from_sidecar(p, CLASSES)


@pytest.mark.parametrize("person", ["person_\u00b2", "person_\u0663", "9" * 5000, "person_" + "9" * 5000, "person_x",
                                    "-3", "person_1.5"])
def test_sidecar_person_is_ascii_digits(tmp_path, person):
    """'person_²' passed str.isdigit() and crashed int(); 5000 digits crashed int() too."""
    p = sidecar(tmp_path, "p.csv", f"start,end,label,person\n1,2,walk,{person}\n")
    with pytest.raises(LabelError, match=f"^{p}: row 1: person .* is not a person id or person_<id>$"):
        GroundTruth.from_sidecar(p, CLASSES)


def test_sidecar_errors_are_short(tmp_path):
    """A row is described in a bounded repr, not pasted whole into the message."""
    p = sidecar(tmp_path, "long.json", json.dumps([{"start": 1, "end": 2, "note": "x" * 1_000_000}]))
    with pytest.raises(LabelError, match=r"row 1 needs start, end \(seconds\) and label") as e:
        GroundTruth.from_sidecar(p, CLASSES)
    assert len(str(e.value)) < 500


def test_sidecar_missing_file_and_unknown_label_keep_their_messages(tmp_path):
    with pytest.raises(LabelError, match="label file not found"):
        GroundTruth.from_sidecar(tmp_path / "nope.csv", CLASSES)
    p = sidecar(tmp_path, "bad.csv", "start,end,label\n1,2,flying\n")
    with pytest.raises(LabelError, match="row 1: label 'flying' is not a class of the model"):
        GroundTruth.from_sidecar(p, CLASSES)
    p = sidecar(tmp_path, "back.csv", "start,end,label\n3,2,walk\n")
    with pytest.raises(LabelError, match="row 1: end 2.0 is not after start 3.0"):
        GroundTruth.from_sidecar(p, CLASSES)


_ODD = ["walk", " sit ", "wave", "person_1", "3", "inf", "-inf", "nan", "1e400", "1e300", "-0", "1.5", "", "\ufeff",
        "1" * 400, "person_\u00b2", "\x00", '"', ","]
_SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-10 ** 400, 10 ** 400)
            | st.floats() | st.text(max_size=12) | st.sampled_from(_ODD))
_JSON = st.recursive(_SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                     max_leaves=12)
_ROW = st.dictionaries(st.sampled_from(["start", "end", "label", "person", "x"]), _JSON, max_size=5)
_CELL = st.sampled_from(_ODD) | st.floats().map(repr) | st.integers(-10 ** 30, 10 ** 30).map(str) | st.text(max_size=8)


@st.composite
def good_row(draw):
    """A valid row, sometimes with one value swapped for a hostile one."""
    start = draw(st.floats(0, 5e9))
    row = {"start": start, "end": start + draw(st.floats(1e-3, 100)), "label": draw(st.sampled_from(CLASSES)),
           "person": draw(st.sampled_from([None, "", "person_3", "7", 2]))}
    if draw(st.booleans()):
        row[draw(st.sampled_from(sorted(row)))] = draw(_SCALARS)
    return row


@st.composite
def sidecar_files(draw):
    kind = draw(st.sampled_from(["json", "json_rows", "csv", "csv_rows", "bytes"]))
    bom = draw(st.booleans())
    if kind == "json":
        body = json.dumps(draw(st.lists(_ROW | _JSON, max_size=6) | _JSON)).encode()
    elif kind == "json_rows":
        body = json.dumps(draw(st.lists(good_row(), min_size=1, max_size=6))).encode()
    elif kind == "csv_rows":
        rows = draw(st.lists(good_row(), min_size=1, max_size=6))
        body = "\n".join(",".join(str(r[k]) if r[k] is not None else "" for k in ("start", "end", "label", "person"))
                         for r in [dict(start="start", end="end", label="label", person="person")] + rows).encode(
            "utf-8", "surrogatepass")
    elif kind == "csv":
        header = draw(st.permutations(["start", "end", "label", "person"]).flatmap(
            lambda cols: st.lists(st.sampled_from(cols + ["x", ""]), max_size=5)))
        rows = draw(st.lists(st.lists(_CELL, max_size=5), max_size=6))
        sep = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        body = sep.join(",".join(r) for r in [header] + rows).encode("utf-8", "surrogatepass")
    else:
        body = draw(st.binary(max_size=200))
    suffix = {"json_rows": ".json", "csv_rows": ".csv"}.get(kind) or draw(st.sampled_from([".csv", ".json", ".txt"]))
    return suffix, (b"\xef\xbb\xbf" if bom else b"") + body


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(sidecar_files())
def test_fuzz_sidecar_raises_only_label_error(fuzz_dir, file):
    suffix, body = file
    p = fuzz_dir / f"labels{suffix}"
    p.write_bytes(body)
    try:
        with time_limit(5):
            gt = GroundTruth.from_sidecar(p, CLASSES)
    except LabelError as e:
        assert str(e).startswith(str(p)) and len(str(e)) < 2000
        event(f"LabelError: {str(e)[len(str(p)) + 2:][:24]}")
        return
    event("accepted")
    assert gt.segments
    for a, b, c, who in gt.segments:
        assert 0 <= a < b <= SIDECAR_MAX_S * NS < 2 ** 63 and 0 <= c < len(CLASSES)
        assert who is None or (isinstance(who, int) and who >= 0)


# ------------------------------------------------------------------------------------------------
# B. model bundle metadata (model.yaml is outside every hash: only the parts' files are hashed)
@pytest.fixture(scope="module")
def shipped() -> tuple[Path, dict]:
    """The default bundle and its model.yaml, text queries cut to 3 (faster to write and read)."""
    root = default_bundle_path()
    meta = yaml.load((root / "model.yaml").read_text(), Loader=LOADER)
    q = meta["text_queries"]
    meta["text_queries"] = {k: q[k][:3] for k in ("labels", "phrases", "embeddings")}
    return root, meta


def write_bundle(dst: Path, src: Path, meta=None, text: str | bytes | None = None) -> Path:
    """A bundle at ``dst``: the parts of ``src`` (linked) and the given model.yaml."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.onnx"):
        if not (dst / f.name).exists():
            (dst / f.name).symlink_to(f)
    if text is None:
        text = yaml.dump(meta, Dumper=DUMPER, sort_keys=False, allow_unicode=True)
    (dst / "model.yaml").write_bytes(text.encode() if isinstance(text, str) else text)
    return dst


def tampered(tmp_path, shipped, edit) -> Path:
    src, meta = shipped
    meta = copy.deepcopy(meta)
    edit(meta)
    return write_bundle(tmp_path / "bundle", src, meta)


def _motion(rt, n: int):
    """Zero body motion for a head that declares the input (bundle v2), else None."""
    if not rt.takes_body_motion("pointcloud_head"):
        return None
    return np.zeros((n, rt.bundle.parts["pointcloud_head"]["inputs"][1]["shape"][1]), np.float32)


def test_bundle_copy_loads_and_runs(tmp_path, shipped):
    b = load_bundle(tampered(tmp_path, shipped, lambda m: None))
    assert b.class_names == shipped[1]["class_names"] and b.text_queries[1].shape == (3, 512)
    rt = Runtime(b, providers="cpu", threads=1)
    assert rt.classify("pointcloud", np.zeros((2, 80), np.float32), _motion(rt, 2)).shape == (2, len(b.class_names))
    assert rt.zero_shot(np.full((1, 512), 512 ** -0.5, np.float32))[1].shape == (1, 3)


def _setter(path: str, value):
    def edit(m):
        *parents, last = path.split(".")
        d = m
        for k in parents:
            d = d[int(k)] if isinstance(d, list) else d[k]
        if value is _DELETE:
            del d[int(last) if isinstance(d, list) else last]
        else:
            d[int(last) if isinstance(d, list) else last] = value(d[int(last) if isinstance(d, list) else last]) \
                if callable(value) else value
    return edit


_DELETE = object()
_DEFAULT_META = yaml.safe_load((default_bundle_path() / "model.yaml").read_text())
N_CLASSES = len(_DEFAULT_META["class_names"])
LAB = "imu_har" if "imu_har" in _DEFAULT_META["parts"] else "imu_head"     # the IMU labeller part (v2: its own model)
_BUNDLE_CASES = [
    # (what, key path, new value or function of the old one, message after "model.yaml: ")
    ("class_names shorter than the heads' output", "class_names", lambda v: v[:N_CLASSES - 1],
     rf"parts\.pointcloud_head\.outputs\[0\]\.shape: the head's output \[None, {N_CLASSES}\] does not give one score "
     rf"per class: class_names lists {N_CLASSES - 1}"),
    ("parts a list", "parts", lambda v: list(v.values()), r"parts: expected a mapping with text keys, got a list"),
    ("a part a string", f"parts.{LAB}", f"{LAB}.onnx", rf"parts\.{LAB}: expected a mapping with text keys, got '{LAB}"),
    ("provenance null", "provenance", None, r"provenance: expected a mapping with text keys, got None"),
    ("provenance.config a list", "provenance.config", [], r"provenance\.config: expected a mapping"),
    ("temporal_padding a number", "provenance.config.pointcloud.temporal_padding", 1,
     r"provenance\.config\.pointcloud\.temporal_padding: expected a list"),
    ("class_names a number", "class_names", 15, r"class_names: expected a non-empty list of names, got 15"),
    ("class_names a string", "class_names", "walk", r"class_names: expected a non-empty list of names"),
    ("class_names empty", "class_names", [], r"class_names: expected a non-empty list of names"),
    ("class_names repeated", "class_names", lambda v: v[:N_CLASSES - 1] + ["stand"], r"class_names: lists \['stand'\] more than once"),
    ("a class name empty", "class_names.3", " ", r"class_names\[3\]: expected a non-empty string"),
    ("a class name a number", "class_names.3", 3, r"class_names\[3\]: expected a non-empty string, got 3"),
    ("an input without shape", f"parts.{LAB}.inputs.0.shape", _DELETE,
     rf"parts\.{LAB}\.inputs\[0\]\.shape: expected a list of dimensions"),
    ("an input without name", f"parts.{LAB}.inputs.0.name", _DELETE, rf"parts\.{LAB}\.inputs\[0\]\.name"),
    ("a dimension a string", f"parts.{LAB}.inputs.0.shape.1", "512", rf"parts\.{LAB}\.inputs\[0\]\.shape\[1\]"),
    ("a dimension 0", f"parts.{LAB}.inputs.0.shape.1", 0, rf"parts\.{LAB}\.inputs\[0\]\.shape\[1\]"),
    ("outputs missing", f"parts.{LAB}.outputs", _DELETE, rf"parts\.{LAB}\.outputs: expected a non-empty list"),
    ("an output a string", f"parts.{LAB}.outputs.0", "logits", rf"parts\.{LAB}\.outputs\[0\]: expected a mapping"),
    ("the head's classes dynamic", f"parts.{LAB}.outputs.0.shape", [None, None],
     rf"parts\.{LAB}\.outputs\[0\]\.shape: the head's output \[None, None\]"),
    ("an embedding output of another width", "parts.imu_encoder.outputs.1.shape", [None, 256],
     r"parts\.imu_encoder\.outputs\[1\]\.shape: an embedding output is \[null, embedding_dim\] = \[null, 512\]"),
    ("a part file outside the bundle", f"parts.{LAB}.file", f"../{LAB}.onnx", rf"parts\.{LAB}\.file: expected a file name inside"),
    ("a part file absolute", f"parts.{LAB}.file", "/etc/hostname", rf"parts\.{LAB}\.file: expected a file name inside"),
    ("a part file a number", f"parts.{LAB}.file", 7, rf"parts\.{LAB}\.file"),
    ("sha256 a number", f"parts.{LAB}.sha256", 12, rf"parts\.{LAB}\.sha256: expected the file's sha256"),
    ("temperature 0", "temperature", 0, r"temperature: expected a finite number > 0, got 0$"),
    ("temperature negative", "temperature", -0.1, r"temperature: expected a finite number > 0"),
    ("temperature nan", "temperature", float("nan"), r"temperature: expected a finite number > 0, got nan"),
    ("temperature inf", "temperature", float("inf"), r"temperature: expected a finite number > 0, got inf"),
    ("temperature a string", "temperature", "0.1", r"temperature: expected a finite number > 0, got '0.1'"),
    ("temperature true", "temperature", True, r"temperature: expected a finite number > 0, got True"),
    ("temperature huge integer", "temperature", 10 ** 400, r"temperature: expected a finite number > 0"),
    ("fps a string", "fps", "fast", r"fps: expected a finite number > 0"),
    ("window fractional", "window", 24.5, r"window: expected an integer in 1\.\.16777216, got 24\.5"),
    ("window huge", "window", 10 ** 400, r"window: expected an integer"),
    ("points_per_frame 0", "points_per_frame", 0, r"points_per_frame: expected an integer"),
    ("embedding_dim a string", "embedding_dim", "512", r"embedding_dim: expected an integer"),
    ("format_version true", "format_version", True, r"format_version True is not supported"),
    ("model_id a number", "model_id", 5, r"model_id: expected a non-empty string"),
    ("metrics null", "metrics", None, r"metrics: expected a mapping"),
    ("imu_layout a list", "imu_layout", ["sites", "channels"], r"imu_layout: expected a mapping"),
    ("imu_layout sites a string", "imu_layout.sites", "left_forearm", r"imu_layout: 'sites' must be a list of names"),
    ("text_queries a list", "text_queries", [1], r"text_queries: expected a mapping"),
    ("embeddings of rank 1", "text_queries.embeddings", lambda v: v[0],
     r"text_queries\.embeddings: expected 3 rows \(one per phrase\) of 512 numbers, got 512"),
    ("embeddings of rank 3", "text_queries.embeddings", lambda v: [[r] for r in v],
     r"text_queries\.embeddings\[0\]: expected 512 numbers \(embedding_dim\), got 1"),
    ("embeddings 511 wide", "text_queries.embeddings", lambda v: [r[:511] for r in v],
     r"text_queries\.embeddings\[0\]: expected 512 numbers \(embedding_dim\), got 511"),
    ("embeddings fewer than labels", "text_queries.embeddings", lambda v: v[:2],
     r"text_queries\.embeddings: expected 3 rows \(one per phrase\) of 512 numbers, got 2"),
    ("an embedding nan", "text_queries.embeddings.1.7", float("nan"), r"text_queries\.embeddings\[1\]\[7\]: nan is not finite"),
    ("an embedding beyond float32", "text_queries.embeddings.1.7", 1e39, r"text_queries\.embeddings\[1\]\[7\]: 1e\+39 is not finite"),
    ("an embedding a string", "text_queries.embeddings.2.0", "0.1", r"text_queries\.embeddings\[2\]\[0\]: expected a number"),
    ("labels fewer than phrases", "text_queries.labels", lambda v: v[:2], r"text_queries\.labels: 2 labels for 3 phrases"),
    ("a phrase a number", "text_queries.phrases.0", 1, r"text_queries\.phrases\[0\]: expected a non-empty string"),
    *([("a body_motion input of another width", "parts.pointcloud_head.inputs.1.shape", [None, 95],
        r"parts\.pointcloud_head\.inputs\[1\]\.shape: a body_motion input is \[null, 4 x window\] = \[null, 96\]")]
      if len(_DEFAULT_META["parts"]["pointcloud_head"]["inputs"]) == 2 else []),
]


@pytest.mark.parametrize("what, key, value, message", _BUNDLE_CASES, ids=[c[0] for c in _BUNDLE_CASES])
def test_tampered_bundle_metadata_is_a_bundle_error_naming_the_key(tmp_path, shipped, what, key, value, message):
    root = tampered(tmp_path, shipped, _setter(key, value))
    with pytest.raises(BundleError, match=f"^{root / 'model.yaml'}: {message}"):
        load_bundle(root)


def test_class_names_and_declared_head_output_both_shortened_fail_at_the_onnx_check(tmp_path, shipped):
    """Consistent metadata that disagrees with the ONNX head is caught when the session opens."""
    def edit(m):
        m["class_names"] = m["class_names"][:N_CLASSES - 1]
        m["parts"] = {k: m["parts"][k] for k in ("pointcloud_head",)}
        m["parts"]["pointcloud_head"]["outputs"][0]["shape"] = [None, N_CLASSES - 1]
    root = tampered(tmp_path, shipped, edit)
    b = load_bundle(root)
    with pytest.raises(BundleError, match=rf"pointcloud_head\.onnx: output 'logits' has shape \['batch', {N_CLASSES}\], "
                                          rf"model\.yaml says \[None, {N_CLASSES - 1}\]"):
        Runtime(b, providers="cpu", threads=1)


@pytest.mark.parametrize("text, message", [
    (b"format_version: 1\nmodel_id: caf\xe9\n", r"not UTF-8 text \(byte 31\)"),
    ("temperature: 2026-02-30\n", r"not valid YAML \(ValueError: day is out of range for month\)"),
    ("window: !!int 0x\n", r"not valid YAML \(ValueError"),
    ("window: !!int _\n", r"not valid YAML \(IndexError"),
    ("fps: !!bool maybe\n", r"not valid YAML \(KeyError"),
    ("date: !!timestamp x\n", r"not valid YAML \(AttributeError"),
    ("a: " + "[" * 1200 + "]" * 1200 + "\n", r"not valid YAML \(RecursionError"),
    ("a: [1\n", r"not valid YAML \(while parsing"),
    ("- 1\n- 2\n", r"expected a mapping of keys"),
])
def test_model_yaml_the_parser_refuses_is_a_bundle_error(tmp_path, shipped, text, message):
    root = write_bundle(tmp_path / "b", shipped[0], text=text)
    with pytest.raises(BundleError, match=f"^{root / 'model.yaml'}: {message}"):
        load_bundle(root)


def test_model_yaml_over_the_size_limit_is_refused_unread(tmp_path, shipped):
    from despite_core.runtime.inference import META_MAX_BYTES

    root = write_bundle(tmp_path / "b", shipped[0], text="")
    with (root / "model.yaml").open("wb") as f:
        f.truncate(META_MAX_BYTES + 1)
    with pytest.raises(BundleError, match=f"model.yaml: {META_MAX_BYTES + 1} bytes, more than"):
        load_bundle(root)


def test_streaming_encoder_with_validated_provenance(tmp_path, shipped):
    """provenance.config.pointcloud absent is fine (the encoder says what geometry it needs)."""
    def edit(m):
        m["provenance"] = {}
        m["parts"] = {k: m["parts"][k] for k in ("pointcloud_tube", "pointcloud_window")}
    rt = Runtime(tampered(tmp_path, shipped, edit), providers="cpu", threads=1)
    with pytest.raises(BundleError, match=r"streaming supports temporal kernel 3, stride 2, padding \[1, 0\]"):
        StreamingPointEncoder(rt)


def _paths(node, prefix=(), depth=0):
    """Every (key path) in a parsed metadata tree, lists cut to their first 3 items."""
    yield prefix
    if depth > 6:
        return
    items = node.items() if isinstance(node, dict) else enumerate(node[:3]) if isinstance(node, list) else ()
    for k, v in items:
        yield from _paths(v, prefix + (k,), depth + 1)


def _mutate(doc, path, action, value):
    if not path:
        return value if action == "replace" else doc
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    k = path[-1]
    if action == "delete":
        del parent[k]
    elif action == "replace":
        parent[k] = value
    elif action == "truncate" and isinstance(parent[k], (list, str)):
        parent[k] = parent[k][: len(parent[k]) // 2]
    elif action == "duplicate" and isinstance(parent[k], list):
        parent[k] = parent[k] + parent[k][:1]
    return doc


_YAML_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.integers(-10 ** 400, 10 ** 400)
                            | st.floats() | st.text(max_size=10)
                            | st.sampled_from(["imu_head.onnx", "../model.yaml", "/etc/hostname", "logits", "features",
                                               "stand", "embedding", "a" * 64, "0" * 64]),
                            lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                            max_leaves=10)


@pytest.fixture(scope="module")
def small_bundle(shipped, tmp_path_factory) -> tuple[Path, dict, list]:
    """Two small parts (the point head and tube), two text queries; the key paths to mutate."""
    src, meta = shipped
    meta = copy.deepcopy(meta)
    meta["parts"] = {k: meta["parts"][k] for k in ("pointcloud_head", "pointcloud_tube")}
    # No part left outputs an embedding: a small embedding_dim keeps model.yaml short (fast to parse).
    meta["embedding_dim"] = 8
    meta["text_queries"] = {k: v[:2] for k, v in meta["text_queries"].items()}
    meta["text_queries"]["embeddings"] = [e[:8] for e in meta["text_queries"]["embeddings"]]
    meta["provenance"].pop("parity")
    meta["metrics"] = {}
    root = write_bundle(tmp_path_factory.mktemp("small_bundle"), src, meta)
    load_bundle(root)
    return root, meta, sorted(set(_paths(meta)), key=str)


@st.composite
def bundle_edits(draw, paths):
    return [(draw(st.sampled_from(paths)), draw(st.sampled_from(["replace", "replace", "delete", "truncate", "duplicate"])),
             draw(_YAML_VALUES)) for _ in range(draw(st.integers(1, 3)))]


@FUZZ
@given(data=st.data())
def test_fuzz_bundle_metadata_raises_only_bundle_error(small_bundle, data):
    root, base, paths = small_bundle
    meta = copy.deepcopy(base)
    for path, action, value in data.draw(bundle_edits(paths)):
        try:
            meta = _mutate(meta, path, action, value)
        except (KeyError, IndexError, TypeError):
            pass                                       # an earlier edit removed or replaced the path
    (root / "model.yaml").write_text(yaml.dump(meta, Dumper=DUMPER, sort_keys=False))
    try:
        with time_limit(10):
            b = load_bundle(root)
            rt = Runtime(b, providers="cpu", threads=1)
    except BundleError as e:
        assert str(e).startswith(str(root)), e
        event(f"BundleError: {str(e)[len(str(root)) + 1:][:36]}")
        return
    event("accepted")
    # Accepted metadata runs: the head gives one score per class, zero-shot over the queries.
    if rt.has("pointcloud_head"):
        width = b.parts["pointcloud_head"]["inputs"][0]["shape"][1]
        assert rt.classify("pointcloud", np.zeros((1, width), np.float32), _motion(rt, 1)).shape == (1, len(b.class_names))
    if rt.text_labels is not None:
        d = b.meta["embedding_dim"]
        assert np.isfinite(rt.zero_shot(np.full((1, d), d ** -0.5, np.float32))[1]).all()
    try:
        StreamingPointEncoder(rt)
    except BundleError:
        pass


_YAML_BITS = ["format_version: 1\n", "a: ", "!!int ", "!!float ", "!!timestamp ", "!!binary ", "!!set ", "!!omap ",
              "!!python/object:os.system ", "0x", "0b", "_", "2026-02-30", "12:99", "1e400", "1.0e+400", ".nan", "~",
              "[", "]", "{", "}", "&a ", "*a ", "\n", "- ", "? ", ": ", "'", '"', "\t", "  ", "%YAML 1.1\n", "---\n",
              "\ufeff", "\x00", "\x85", ",", "#", "parts: ", "class_names: ", "temperature: "]


@FUZZ
@given(st.lists(st.sampled_from(_YAML_BITS) | st.text(max_size=5), max_size=30).map("".join) | st.binary(max_size=100))
def test_fuzz_model_yaml_text_raises_only_bundle_error(fuzz_dir, text):
    root = fuzz_dir / "yaml_bundle"
    root.mkdir(exist_ok=True)
    (root / "model.yaml").write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    with pytest.raises(BundleError, match=f"^{root / 'model.yaml'}: "), time_limit(5):
        load_bundle(root)


# ------------------------------------------------------------------------------------------------
# C. sequence stores
STORE_CLASSES = ("walk", "wave", "sit")
LAYOUT = ImuLayout()


def _sequence(sid: str, t: int = 6, seed: int = 0) -> Sequence:
    rng = np.random.default_rng(seed)
    rot = np.broadcast_to(np.eye(3).reshape(9), (t, 4, 9))
    acc = np.broadcast_to([0, 0, 9.81], (t, 4, 3))
    return Sequence(sid, "subj_" + sid, 10.0, np.arange(t) / 10.0, np.resize([0, 1, -1, 2], t),
                    text=np.resize(["a person walks", ""], t),
                    points=[rng.normal(size=(int(rng.integers(0, 5)), 3)).astype(np.float32) for _ in range(t)],
                    imu=np.concatenate([rot, acc], -1).astype(np.float32),
                    joints=rng.normal(size=(t, 24, 3)).astype(np.float32), scene="scene0", person=1)


def make_store(path: Path) -> Path:
    with StoreWriter(path, STORE_CLASSES, imu_layout=LAYOUT, joint_names=SMPL_JOINT_NAMES) as w:
        w.add(_sequence("s1"))
        w.add(_sequence("s2", seed=1))
        w.add_split("by_subject", {"train": ["s1"], "test": ["s2"]})
    return path


class NewRoot:
    """An edit's result that replaces meta.json's whole document."""

    def __init__(self, doc):
        self.doc = doc


def edit_meta(root: Path, edit) -> None:
    meta = json.loads((root / "meta.json").read_text())
    out = edit(meta)
    (root / "meta.json").write_text(json.dumps(out.doc if isinstance(out, NewRoot) else meta))


def edit_shard(root: Path, edit) -> None:
    shard = root / "shard-00000.npz"
    arrays = dict(np.load(shard))
    edit(arrays)
    np.savez(shard, **arrays)


def read_all(root: Path) -> None:
    store = Store(root)
    for sid in store.sequence_ids:
        store.read(sid)
    store.subjects()


def test_store_good_copy_reads(tmp_path):
    root = make_store(tmp_path / "st")
    store = Store(root)
    seq = store.read("s2")
    assert seq.num_frames == 6 and seq.person == 1 and seq.imu.shape == (6, 4, 12)
    assert store.split("by_subject", "test") == ["s2"] and store.subjects() == ["subj_s1", "subj_s2"]


def _seq_field(key, value):
    def edit(m):
        if value is _DELETE:
            del m["sequences"]["s1"][key]
        else:
            m["sequences"]["s1"][key] = value
    return edit


_META_CASES = [
    # (what, edit of the parsed meta.json, message after "meta.json: ")
    ("meta.json a list", lambda m: NewRoot([m]), r"expected a JSON object of store fields, got a list"),
    ("sequences a list", lambda m: m.update(sequences=list(m["sequences"].values())),
     r"field 'sequences' must be an object of sequence id -> .*, got a list"),
    ("fps a string", _seq_field("fps", "fast"), r"sequence 's1': field 'fps' must be a finite number > 0, got 'fast'"),
    ("fps 0", _seq_field("fps", 0), r"sequence 's1': field 'fps' must be a finite number > 0, got 0"),
    ("fps true", _seq_field("fps", True), r"sequence 's1': field 'fps' must be a finite number > 0, got True"),
    ("fps a huge integer", _seq_field("fps", 10 ** 400), r"sequence 's1': field 'fps' must be a finite number > 0"),
    ("fps inf", _seq_field("fps", float("inf")), r"sequence 's1': field 'fps' must be a finite number > 0, got inf"),
    ("no shard", _seq_field("shard", _DELETE), r"sequence 's1': missing field 'shard' \(a shard file name inside the store\)"),
    ("no frames", _seq_field("frames", _DELETE), r"sequence 's1': missing field 'frames'"),
    ("shard outside the store", _seq_field("shard", "../shard-00000.npz"), r"sequence 's1': field 'shard' must be a shard file"),
    ("shard absolute", _seq_field("shard", "/etc/hostname"), r"sequence 's1': field 'shard' must be a shard file"),
    ("shard a number", _seq_field("shard", 0), r"sequence 's1': field 'shard' must be a shard file"),
    ("index a string", _seq_field("index", "0"), r"sequence 's1': field 'index' must be an integer >= 0, got '0'"),
    ("index negative", _seq_field("index", -1), r"sequence 's1': field 'index' must be an integer >= 0, got -1"),
    ("subject a number", _seq_field("subject", 5), r"sequence 's1': field 'subject' must be a string, got 5"),
    ("modalities a string", _seq_field("modalities", "points"), r"sequence 's1': field 'modalities' must be a non-empty list"),
    ("modalities unknown", _seq_field("modalities", ["lidar"]), r"sequence 's1': field 'modalities' must be a non-empty list"),
    ("modalities repeated", _seq_field("modalities", ["imu", "imu"]), r"sequence 's1': field 'modalities'"),
    ("person a string", _seq_field("person", "1"), r"sequence 's1': field 'person' must be an integer, got '1'"),
    ("scene a number", _seq_field("scene", 3), r"sequence 's1': field 'scene' must be a string, got 3"),
    ("attrs a list", _seq_field("attrs", []), r"sequence 's1': field 'attrs' must be an object, got a list"),
    ("has_text a string", _seq_field("has_text", "yes"), r"sequence 's1': field 'has_text' must be true or false"),
    ("an entry a list", lambda m: m["sequences"].update(s1=[1]), r"sequence 's1': expected an object"),
    ("an empty sequence id", lambda m: m["sequences"].update({"": m["sequences"]["s1"]}), r"sequence '': a sequence id"),
    ("class_names a string", lambda m: m.update(class_names="walk"), r"field 'class_names' must be a non-empty list"),
    ("class_names of numbers", lambda m: m.update(class_names=[1, 2]), r"field 'class_names' must be a non-empty list"),
    ("format_version true", lambda m: m.update(format_version=True), r"format_version True is not supported"),
    ("imu_layout a list", lambda m: m.update(imu_layout=["sites", "channels"]), r"field 'imu_layout' must be null or an object"),
    ("imu_layout sites a string", lambda m: m["imu_layout"].update(sites="left_forearm"),
     r"field 'imu_layout': 'sites' must be a list of names, got 'left_forearm'"),
    ("imu_layout channels of numbers", lambda m: m["imu_layout"].update(channels=[1]), r"field 'imu_layout': 'channels' must"),
    ("joint_names a number", lambda m: m.update(joint_names=5), r"field 'joint_names' must be null or a list of joint names"),
    ("shards a string", lambda m: m.update(shards="shard-00000.npz"), r"field 'shards' must be a list"),
    ("a shard without file", lambda m: m["shards"][0].pop("file"), r"field 'shards\[0\]' must be"),
    ("source a number", lambda m: m.update(source=1), r"field 'source' must be a string, got 1"),
]


@pytest.mark.parametrize("what, edit, message", _META_CASES, ids=[c[0] for c in _META_CASES])
def test_malformed_meta_json_is_a_store_error_at_open(tmp_path, what, edit, message):
    root = make_store(tmp_path / "st")
    edit_meta(root, edit)
    with pytest.raises(StoreError, match=f"^{root / 'meta.json'}: {message}"):
        Store(root)


@pytest.mark.parametrize("text, message", [
    (b'{"format": "caf\xe9"}', r"not UTF-8 text \(byte 15\)"),
    ("[" * 100_000 + "]" * 100_000, r"invalid JSON \(RecursionError"),
    ('{"format": 1' + "0" * 5000 + "}", r"invalid JSON \(ValueError: Exceeds the limit \(4300 digits\)"),
    ("{", r"invalid JSON \(Expecting property name"),
])
def test_meta_json_the_parser_refuses_is_a_store_error(tmp_path, text, message):
    root = make_store(tmp_path / "st")
    (root / "meta.json").write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(StoreError, match=f"^{root / 'meta.json'}: {message}"):
        Store(root)


def _set(key, value):
    return lambda a: a.__setitem__(key, value(a[key]) if callable(value) else value)


_SHARD_CASES = [
    # (what, edit of the shard's arrays, message after "shard-00000.npz, sequence 's1': ")
    ("complex points", _set("0/points", lambda v: v.astype(np.complex64)),
     r"field 'points' must hold real numbers \(float or int\), got dtype complex64"),
    ("complex imu", _set("0/imu", lambda v: v.astype(np.complex128)), r"field 'imu' must hold real numbers"),
    ("bool joints", _set("0/joints", lambda v: v > 0), r"field 'joints' must hold real numbers .* got dtype bool"),
    ("complex timestamps", _set("0/timestamps", lambda v: v.astype(np.complex128)), r"field 'timestamps' must hold real numbers"),
    ("text timestamps", _set("0/timestamps", lambda v: v.astype(str)), r"field 'timestamps' must hold real numbers"),
    ("bool timestamps", _set("0/timestamps", lambda v: v > 0.25), r"field 'timestamps' must hold real numbers"),
    ("scalar timestamps", _set("0/timestamps", np.float64(1.0)), r"field 'timestamps' has shape \(\), meta.json says 6 frames"),
    ("fewer timestamps than frames", _set("0/timestamps", lambda v: v[:5]),
     r"field 'timestamps' has shape \(5,\), meta.json says 6 frames"),
    ("float labels", _set("0/labels", lambda v: v.astype(np.float32)), r"field 'labels' must be integers"),
    ("bool labels", _set("0/labels", lambda v: v > 0), r"field 'labels' must be integers, got dtype bool"),
    ("scalar points", _set("0/points", np.float32(1)), r"field 'points' has shape \(\), expected \(P, 3\)"),
    ("flat points", _set("0/points", lambda v: v.ravel()), r"field 'points' has shape \(\d+,\), expected \(P, 3\)"),
    ("float offsets", _set("0/points_offsets", lambda v: v.astype(np.float64)),
     r"field 'points_offsets' must be integers, got dtype float64"),
    ("decreasing unsigned offsets", _set("0/points_offsets", lambda v: np.array([0, 5, 3, 9, 9, 9, v[-1]], np.uint64)),
     r"field 'points_offsets' \(shape \(7,\)\) does not partition"),
    ("imu missing", lambda a: a.pop("0/imu"), r"field 'imu' missing \(meta.json lists it\)"),
    ("text missing", lambda a: a.pop("0/text"), r"field 'text' missing \(meta.json lists it\)"),
    ("nan imu", lambda a: a["0/imu"].__setitem__((2, 1, 0), np.nan), r"field 'imu' holds NaN/Inf \(first at index \(2, 1, 0\)\)"),
]


@pytest.mark.parametrize("what, edit, message", _SHARD_CASES, ids=[c[0] for c in _SHARD_CASES])
def test_malformed_shard_arrays_are_a_store_error_at_read(tmp_path, what, edit, message):
    root = make_store(tmp_path / "st")
    edit_shard(root, edit)
    store = Store(root)
    store.read("s2")                                   # the other sequence of the shard is fine
    with pytest.raises(StoreError, match=f"^{root / 'shard-00000.npz'}, sequence 's1': {message}"):
        store.read("s1")


def test_meta_frames_disagreeing_with_the_shard_is_a_store_error(tmp_path):
    root = make_store(tmp_path / "st")
    edit_meta(root, _seq_field("frames", 7))
    with pytest.raises(StoreError, match=r"sequence 's1': field 'timestamps' has shape \(6,\), meta.json says 7 frames"):
        Store(root).read("s1")


@pytest.mark.parametrize("what, content, message", [
    ("a .npy file", None, r"cannot read shard \(a .npy array, not an .npz archive\)"),
    ("a corrupt zip", b"PK\x03\x04" + bytes(range(256)) * 4, r"cannot read shard \(BadZipFile"),
    ("pickled data", b"\x80\x04K\x01.", r"cannot read shard \(UnpicklingError|cannot read shard \(ValueError"),
])
def test_unreadable_shard_is_a_store_error(tmp_path, what, content, message):
    root = make_store(tmp_path / "st")
    shard = root / "shard-00000.npz"
    if content is None:
        with shard.open("wb") as f:
            np.save(f, np.zeros(3))
    else:
        shard.write_bytes(content)
    with pytest.raises(StoreError, match=f"^{shard}: {message}"):
        Store(root).read("s1")


def test_corrupt_member_of_a_shard_is_a_store_error(tmp_path):
    root = make_store(tmp_path / "st")
    shard = root / "shard-00000.npz"
    data = bytearray(shard.read_bytes())
    i = data.index(b"0/joints.npy") + 200                  # inside the member's data: its CRC no longer matches
    data[i:i + 64] = bytes(64)
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"sequence 's1': field 'joints' unreadable \(BadZipFile"):
        Store(root).read("s1")


@pytest.mark.parametrize("content, message", [
    ("5", r"expected a JSON object of split name -> list of sequence ids"),
    ('{"train": "s1"}', r"expected a JSON object of split name -> list of sequence ids"),
    ('{"train": [1]}', r"expected a JSON object of split name -> list of sequence ids"),
    (b'{"train": ["\xff"]}', r"not UTF-8 text"),
    ("[" * 100_000, r"invalid JSON"),
])
def test_malformed_split_file_is_a_store_error(tmp_path, content, message):
    root = make_store(tmp_path / "st")
    path = root / "splits" / "by_subject.json"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(StoreError, match=f"^{path}: {message}"):
        Store(root).split("by_subject", "train")
    with pytest.raises(StoreError, match="no split scheme '../meta'"):
        Store(root).split("../meta", "train")


_ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.float16, np.int16, np.int64, np.uint8, np.uint64, np.bool_,
                           np.complex64, np.dtype("<U3"), np.dtype("M8[s]")]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7))
_JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.integers(-10 ** 400, 10 ** 400)
                            | st.floats() | st.text(max_size=10)
                            | st.sampled_from(["shard-00000.npz", "../meta.json", "/etc/hostname", ".", "points", "imu",
                                               "joints", "s1", "s2"]),
                            lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                            max_leaves=10)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> tuple[Path, dict, dict, list]:
    root = make_store(tmp_path_factory.mktemp("small_store") / "st")
    meta = json.loads((root / "meta.json").read_text())
    arrays = dict(np.load(root / "shard-00000.npz"))
    return root, meta, arrays, sorted(set(_paths(meta)), key=str)


@FUZZ
@given(data=st.data())
def test_fuzz_store_raises_only_store_error(small_store, data):
    src, base_meta, base_arrays, paths = small_store
    meta, arrays = copy.deepcopy(base_meta), dict(base_arrays)
    for _ in range(data.draw(st.integers(1, 3))):
        if data.draw(st.booleans()):
            path = data.draw(st.sampled_from(paths))
            action = data.draw(st.sampled_from(["replace", "replace", "delete", "truncate", "duplicate"]))
            try:
                meta = _mutate(meta, path, action, data.draw(_JSON_VALUES))
            except (KeyError, IndexError, TypeError):
                pass
        else:
            key = data.draw(st.sampled_from(sorted(base_arrays)))
            if data.draw(st.integers(0, 4)) == 0:
                arrays.pop(key, None)
            else:
                arrays[key] = data.draw(_ARRAYS)
    root = Path(tempfile.mkdtemp(dir=src.parent))
    try:
        shutil.copytree(src / "splits", root / "splits")
        (root / "meta.json").write_text(json.dumps(meta))
        np.savez(root / "shard-00000.npz", **arrays)
        try:
            with time_limit(10):
                store = Store(root)
                for sid in store.sequence_ids:
                    for modalities in (None, ("points",), ("imu", "joints")):
                        seq = store.read(sid, modalities)
                        assert all(np.asarray(getattr(seq, m)).dtype.kind in "fiu" for m in ("imu", "joints")
                                   if getattr(seq, m) is not None)
                store.subjects()
                store.split("by_subject", "train")
            event("accepted")
        except StoreError as e:
            assert str(e).startswith(str(root)), e
            event(f"StoreError: {str(e)[len(str(root)) + 1:][:40]}")
    finally:
        shutil.rmtree(root)
