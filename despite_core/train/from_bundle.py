"""PyTorch weights recovered from a model bundle's ONNX parts, so that a shipped bundle can be
fine-tuned (``despite train har --init <bundle dir>``) although its pre-training checkpoint is gone.

Method (general, exact; nothing is fitted or approximated):

1. The module is rebuilt from the bundle's ``provenance.config`` (the ``DeSPITEConfig.to_dict()``
   of the exported model): ``DeSPITEModel(config).encoders[m]`` for an encoder part,
   ``make_head(kind, F, C)`` for a HAR head (kind, F and C read from the head's graph).
2. Every floating-point entry of its state_dict is filled with "tags": with all entries
   flattened and concatenated, element k holds ``k + 1`` (export A) and, in a second export,
   ``-(perm[k] + 1)`` for a fixed pseudo-random permutation ``perm`` (export B). Both are exact
   in float32 (at most 2**24 elements). Both are exported with the very call that wrote the
   bundle (``despite_core.onnx_export.export_onnx``: legacy TorchScript exporter, dynamic batch, the opset
   read from the bundle file's ``opset_import``, the export batch size).
3. The tagged graphs and the shipped graph are walked node by node: same op types and domains in
   the same order, the same attributes, every node input coming from the same place (graph input,
   output k of node j, initializer or nothing). Anything else is a :class:`BundleWeightsError`
   saying the bundle was exported by other model code, another config or another exporter.
   Beforehand, ``Identity(initializer)`` nodes are folded away in all three graphs: the exporter
   writes one wherever a weight equals an earlier one in value (untrained LayerNorms, say), which
   the tagged exports, whose weights all differ, never have.
4. Where a node input is an initializer (or a node attribute a tensor, e.g. a ``Constant``), the
   three tensors (A, B, shipped) are compared element by element. An element equal in A and B
   does not depend on the weights (a shape, a radius, an index table): the shipped graph must hold
   exactly that value. Any other element is weight-derived: A must be an integer 1..N, B an integer
   -N..-1, and both must name the same element k = A - 1 = perm^-1(-B - 1), whose value is then
   the shipped element at the same position. ONNX initializers are the parameters after pure
   re-arrangements (the MatMul / Gemm transposes, the LSTM's gate reordering and W / R / B
   concatenation, reshapes), which keep tags intact; any arithmetic on weights made at export
   (constant folding of a product, a sum, a cast) breaks the tags and is reported, never guessed.
5. Every element must be covered at least once; where covered more than once (the exporter shares
   an initializer between uses, or merges equal-valued ones) every copy must have the same bits.
   An entry absent from the graph is an error unless the forward pass does not use it at all (no
   autograd path from it to the outputs); such an entry keeps a deterministic fresh
   initialisation and is reported (``RecoveredPart.unused``). Non-float state entries (none in
   DeSPITE's encoders) are an error, except BatchNorm's unused ``num_batches_tracked``.
6. The recovered module, run in PyTorch, must reproduce the shipped file under ONNX Runtime (CPU)
   on random inputs at a batch size other than the export batch: every output within 1e-4 (max
   abs). Point clouds are drawn on a 1/64 grid, so the ball query's and farthest point sampling's
   comparisons are exact in both runtimes and cannot flip on a rounding difference.

Guarantee: a returned state_dict is bit-for-bit the one that was exported (every element is
copied, none computed), for a graph that is structurally identical to what this code exports from
the bundle's config; otherwise a :class:`BundleWeightsError` naming the file and part.
"""
from __future__ import annotations

import datetime as _dt
import math
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

MAX_TAGS = 1 << 24                 # float32 represents every integer up to 2**24 exactly
PARITY_TOL = 1e-4
PARITY_BATCH = 3
ENCODER_PARTS = ("pointcloud", "imu", "skeleton")
_ORDER = "SPI"                     # preset letters, as despite_core.presets (text never in a bundle)
_LETTER = {"skeleton": "S", "pointcloud": "P", "imu": "I"}


class BundleWeightsError(ValueError):
    """The weights cannot be recovered exactly from the bundle; the message names file and part."""


@dataclass
class RecoveredPart:
    """One part's recovered weights and how they were checked."""
    part: str
    file: str
    state: dict[str, torch.Tensor]
    opset: int
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)       # entries the forward pass never uses
    seconds: float = 0.0
    body_motion: int = 0                                  # a head's body-motion input width (0: none)

    def report(self) -> dict[str, Any]:
        return {"file": self.file, "opset": self.opset, "max_abs_diff": self.max_abs_diff,
                "unused": list(self.unused), "seconds": round(self.seconds, 3)}


# --------------------------------------------------------------------------------------------- bundle


def _meta(bundle_dir) -> tuple[Path, dict]:
    from despite_core.runtime.inference import BundleError, _read_meta

    root = Path(bundle_dir)
    path = root / "model.yaml"
    if not path.is_file():
        raise BundleWeightsError(f"{path}: model bundle metadata not found")
    try:
        meta = _read_meta(path)
    except BundleError as e:
        raise BundleWeightsError(str(e)) from None
    parts = meta.get("parts")
    if not isinstance(parts, dict):
        raise BundleWeightsError(f"{path}: 'parts' must be a mapping of part name -> {{file, ...}}")
    return root, meta


def _part_file(root: Path, meta: dict, part: str) -> Path | None:
    """The part's ONNX file (None when the bundle has no such part), its sha256 checked when declared."""
    entry = meta["parts"].get(part)
    if entry is None:
        return None
    f = entry.get("file") if isinstance(entry, dict) else None
    if not isinstance(f, str) or not f or Path(f).is_absolute() or ".." in Path(f).parts:
        raise BundleWeightsError(f"{root / 'model.yaml'}: parts.{part}.file must be a file name inside the bundle")
    path = root / f
    if not path.is_file():
        raise BundleWeightsError(f"{path}: part {part!r} listed in model.yaml is missing")
    want = entry.get("sha256")
    if want:
        from despite_core.runtime.bundle import sha256_file

        if sha256_file(path) != str(want).lower():
            raise BundleWeightsError(f"{path}: part {part!r}: sha256 does not match model.yaml: the file is corrupt "
                                     f"or from another export")
    return path


def _config(root: Path, meta: dict):
    from despite_core.models.despite import DeSPITEConfig

    cfg = (meta.get("provenance") or {}).get("config") if isinstance(meta.get("provenance"), dict) else None
    if not isinstance(cfg, dict):
        raise BundleWeightsError(f"{root / 'model.yaml'}: provenance.config (the exported model's DeSPITEConfig) is "
                                 f"missing; without it the module cannot be rebuilt")
    try:
        return cfg, DeSPITEConfig.from_dict(cfg)
    except (TypeError, ValueError) as e:
        raise BundleWeightsError(f"{root / 'model.yaml'}: provenance.config is not a model config this code "
                                 f"understands ({e})") from None


def _encoder_modalities(meta: dict) -> list[str]:
    return [m for m in ENCODER_PARTS if f"{m}_encoder" in meta["parts"]]


def _preset_for(mods: list[str]) -> str:
    """The text-free preset holding exactly the bundle's encoders (one encoder: har's PRESET_WITH)."""
    from despite_core.presets import PRESETS
    from despite_core.train.heads import PRESET_WITH

    if len(mods) == 1:
        return PRESET_WITH[mods[0]]
    name = "De" + "".join(c for c in _ORDER if any(_LETTER[m] == c for m in mods)) + "E"
    assert name in PRESETS, name
    return name


# ------------------------------------------------------------------------------------------- tagging


def _opset_of(model, path: Path) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    raise BundleWeightsError(f"{path}: no default-domain opset in opset_import")


def _float_entries(module: nn.Module, where: str) -> tuple[list[tuple[str, torch.Tensor]], dict[str, str], list[str]]:
    """(taggable entries, aliases name -> tagged name for tied tensors, non-float entries to take fresh)."""
    entries, aliases, fresh, seen = [], {}, [], {}
    for name, t in module.state_dict(keep_vars=True).items():
        if not t.is_floating_point():
            if name.endswith("num_batches_tracked"):
                fresh.append(name)
                continue
            raise BundleWeightsError(f"{where}: state entry {name!r} is {t.dtype}; only float32 entries can be "
                                     f"recovered by tagging")
        if t.dtype != torch.float32:
            raise BundleWeightsError(f"{where}: state entry {name!r} is {t.dtype}; only float32 entries can be "
                                     f"recovered by tagging (exact integer tags)")
        key = (t.data_ptr(), tuple(t.shape), t.stride(), t.dtype)
        if key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        entries.append((name, t))
    return entries, aliases, fresh


def _fill(entries, values: np.ndarray) -> None:
    off = 0
    with torch.no_grad():
        for _, t in entries:
            n = t.numel()
            t.copy_(torch.from_numpy(values[off:off + n]).view(t.shape).to(t.dtype))
            off += n


def _unused(module: nn.Module, example, entries) -> set[str]:
    """Entries with no autograd path to any output (the forward pass never uses them)."""
    tensors = [t for _, t in entries]
    flags = [t.requires_grad for t in tensors]
    try:
        for t in tensors:
            t.requires_grad_(True)
        with torch.enable_grad():
            out = module.eval()(*example)
            outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if o.requires_grad]
            if not outs:
                return {n for n, _ in entries}
            grads = torch.autograd.grad(outs, tensors, [torch.ones_like(o) for o in outs], allow_unused=True)
    finally:
        for t, f in zip(tensors, flags):
            t.requires_grad_(f)
    return {n for (n, _), g in zip(entries, grads) if g is None}


# ------------------------------------------------------------------------------------- graph matching


class _Walk:
    """Matches the tagged graphs (A, B) against the shipped one (S) and collects (tag, value) pairs."""

    def __init__(self, where: str, n: int, inverse: np.ndarray) -> None:
        self.where, self.n, self.inverse = where, n, inverse
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.done: set[tuple[str, str, str]] = set()

    def fail(self, msg: str) -> BundleWeightsError:
        return BundleWeightsError(f"{self.where}: {msg}; the bundle was exported by other model code, another "
                                  f"model config or another exporter than this one rebuilds from provenance.config, "
                                  f"so its weights cannot be recovered exactly")

    # -- tensors
    def tensors(self, a, b, s, what: str) -> None:
        from onnx import numpy_helper

        ta, tb, ts = (numpy_helper.to_array(x) for x in (a, b, s))
        if ta.shape != ts.shape or ta.dtype != ts.dtype or tb.shape != ta.shape or tb.dtype != ta.dtype:
            raise self.fail(f"{what}: {ts.dtype}{list(ts.shape)} in the bundle, {ta.dtype}{list(ta.shape)} exported "
                            f"from the config")
        fa, fb, fs = ta.reshape(-1), tb.reshape(-1), ts.reshape(-1)
        if np.issubdtype(fa.dtype, np.floating):
            same = (fa == fb) | (np.isnan(fa) & np.isnan(fb))
        else:
            same = fa == fb
        const = np.nonzero(same)[0]
        if const.size:
            ca, cs = fa[const], fs[const]
            eq = (ca == cs) | (np.isnan(ca) & np.isnan(cs)) if np.issubdtype(fa.dtype, np.floating) else ca == cs
            if not eq.all():
                i = const[np.argmin(eq)]
                raise self.fail(f"{what}: a weight-independent value differs (element {int(i)}: {fs[i]!r} in the "
                                f"bundle, {fa[i]!r} from the config)")
        derived = np.nonzero(~same)[0]
        if not derived.size:
            return
        if fa.dtype != np.float32:
            raise BundleWeightsError(f"{self.where}: {what}: {fa.dtype} values depend on the weights (only float32 "
                                     f"copies can be traced), so the weights cannot be recovered exactly")
        va, vb = fa[derived].astype(np.float64), fb[derived].astype(np.float64)
        ok = (va == np.round(va)) & (va >= 1) & (va <= self.n) & (vb == np.round(vb)) & (vb <= -1) & (vb >= -self.n)
        if ok.all():
            ka = va.astype(np.int64) - 1
            ok = self.inverse[(-vb).astype(np.int64) - 1] == ka
        if not ok.all():
            i = derived[np.argmin(ok)]
            raise BundleWeightsError(f"{self.where}: {what}: element {int(i)} is computed from the weights, not "
                                     f"copied (the exporter folded arithmetic on parameters into it), so the weights "
                                     f"cannot be recovered exactly")
        self.keys.append(ka)
        self.values.append(fs[derived].copy())

    # -- graphs
    def graph(self, ga, gb, gs, scope: str, outer: tuple) -> None:
        """``outer``: per graph (A, B, S), (name -> source, name -> initializer) of the enclosing scopes."""
        if len(ga.node) != len(gs.node):
            raise self.fail(f"{scope or 'graph'}: {len(gs.node)} nodes in the bundle, {len(ga.node)} exported from "
                            f"the config")
        if len(gb.node) != len(ga.node):
            raise BundleWeightsError(f"{self.where}: the two tagged exports differ in structure (data-dependent "
                                     f"tracing); the method does not apply to this module")
        for kind in ("input", "output"):
            sa = [(v.name, _shape(v)) for v in getattr(ga, kind)]
            ss = [(v.name, _shape(v)) for v in getattr(gs, kind)]
            if sa != ss:
                raise self.fail(f"{scope or 'graph'}: {kind}s {ss} in the bundle, {sa} exported from the config")
        scopes = []
        for g, (osrc, oinit) in zip((ga, gb, gs), outer):
            src, inits = dict(osrc), dict(oinit)
            for i, v in enumerate(g.input):
                src[v.name] = ("input", scope, i)
            for t in g.initializer:
                src[t.name] = ("init", scope, t.name)
                inits[t.name] = t
            for j, nd in enumerate(g.node):
                for k, out in enumerate(nd.output):
                    if out:
                        src[out] = ("node", scope, j, k)
            scopes.append((src, inits))
        (srca, ia), (_, ib), (srcs, is_) = scopes
        for j, (na, nb, ns) in enumerate(zip(ga.node, gb.node, gs.node)):
            at = f"{scope}node {j} ({ns.op_type}{' ' + ns.name if ns.name else ''})"
            if (na.op_type, na.domain) != (ns.op_type, ns.domain):
                raise self.fail(f"{at}: op {ns.domain + '.' if ns.domain else ''}{ns.op_type} in the bundle, "
                                f"{na.domain + '.' if na.domain else ''}{na.op_type} exported from the config")
            if len(na.input) != len(ns.input) or len(na.output) != len(ns.output) or len(nb.input) != len(na.input):
                raise self.fail(f"{at}: {len(ns.input)} inputs / {len(ns.output)} outputs in the bundle, "
                                f"{len(na.input)} / {len(na.output)} exported from the config")
            for p, (xa, xb, xs) in enumerate(zip(na.input, nb.input, ns.input)):
                ra = srca.get(xa, ("empty",) if not xa else ("unknown", xa))
                rs = srcs.get(xs, ("empty",) if not xs else ("unknown", xs))
                if ra[0] == "init" and rs[0] == "init":
                    if (xa, xs, scope) in self.done:
                        continue
                    self.done.add((xa, xs, scope))
                    if xb not in ib:
                        raise BundleWeightsError(f"{self.where}: the two tagged exports differ in structure (data-"
                                                 f"dependent tracing); the method does not apply to this module")
                    self.tensors(ia[xa], ib[xb], is_[xs], f"{at} input {p} (initializer {xs!r})")
                elif ra != rs or ra[0] == "unknown":
                    raise self.fail(f"{at}: input {p} comes from {_src(rs)} in the bundle, {_src(ra)} exported from "
                                    f"the config")
            self.attributes(na, nb, ns, at, scopes, scope, j)

    def attributes(self, na, nb, ns, at: str, outer, scope: str, j: int) -> None:
        from onnx import AttributeProto, helper

        aa = {a.name: a for a in na.attribute}
        ab = {a.name: a for a in nb.attribute}
        as_ = {a.name: a for a in ns.attribute}
        if set(aa) != set(as_):
            raise self.fail(f"{at}: attributes {sorted(as_)} in the bundle, {sorted(aa)} exported from the config")
        for name in aa:
            a, b, s = aa[name], ab.get(name), as_[name]
            if b is None or a.type != s.type:
                raise self.fail(f"{at}: attribute {name!r} differs in type")
            if a.type == AttributeProto.TENSOR:
                self.tensors(a.t, b.t, s.t, f"{at} attribute {name!r}")
            elif a.type == AttributeProto.TENSORS:
                if len(a.tensors) != len(s.tensors):
                    raise self.fail(f"{at}: attribute {name!r} differs in length")
                for i, (x, y, z) in enumerate(zip(a.tensors, b.tensors, s.tensors)):
                    self.tensors(x, y, z, f"{at} attribute {name!r}[{i}]")
            elif a.type == AttributeProto.GRAPH:
                self.graph(a.g, b.g, s.g, f"{scope}node {j}.{name}/", outer)
            elif a.type == AttributeProto.GRAPHS:
                if len(a.graphs) != len(s.graphs):
                    raise self.fail(f"{at}: attribute {name!r} differs in length")
                for i, (x, y, z) in enumerate(zip(a.graphs, b.graphs, s.graphs)):
                    self.graph(x, y, z, f"{scope}node {j}.{name}[{i}]/", outer)
            else:
                va, vs = helper.get_attribute_value(a), helper.get_attribute_value(s)
                if va != vs and not _both_nan(va, vs):
                    raise self.fail(f"{at}: attribute {name!r} is {_clip(vs)} in the bundle, {_clip(va)} exported "
                                    f"from the config")


def _fold_identities(g, outer_inits: frozenset = frozenset(), rename: dict | None = None) -> None:
    """Drop ``Identity(initializer)`` nodes, their consumers reading the initializer itself. The
    exporter writes one for every initializer equal in value to an earlier one (so the shipped
    graph's structure depends on which weights happen to be equal, e.g. untrained LayerNorms);
    the tagged exports, all of whose weights differ, have none. Exact: Identity copies."""
    rename = dict(rename or {})
    inits = outer_inits | {t.name for t in g.initializer}
    outputs = {o.name for o in g.output}
    keep = []
    for n in g.node:
        if (n.op_type == "Identity" and n.domain in ("", "ai.onnx") and len(n.input) == 1 and len(n.output) == 1
                and rename.get(n.input[0], n.input[0]) in inits and n.output[0] not in outputs):
            rename[n.output[0]] = rename.get(n.input[0], n.input[0])
            continue
        keep.append(n)
    for n in keep:
        for i, x in enumerate(n.input):
            if x in rename:
                n.input[i] = rename[x]
        for a in n.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                _fold_identities(sub, frozenset(inits), rename)
    del g.node[:]
    g.node.extend(keep)


def _both_nan(a, b) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def _clip(v) -> str:
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def _shape(v) -> tuple:
    t = v.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)
    return (t.elem_type, dims)


def _src(r: tuple) -> str:
    if r[0] == "input":
        return f"graph input {r[2]}"
    if r[0] == "init":
        return "an initializer"
    if r[0] == "node":
        return f"output {r[3]} of node {r[2]}"
    if r[0] == "empty":
        return "no tensor (optional input omitted)"
    return f"an unknown tensor {r[1]!r}"


# ------------------------------------------------------------------------------------------ recovery


def _recover(build: Callable[[], nn.Module], example: tuple, parity_inputs: tuple, path: Path, part: str,
             input_names: list[str], output_names: list[str]) -> RecoveredPart:
    import onnx
    import onnxruntime as ort

    from despite_core.onnx_export import export_onnx

    t0 = time.perf_counter()
    where = f"{path} (part {part})"
    try:
        shipped = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - onnx raises DecodeError, OSError, ...
        raise BundleWeightsError(f"{where}: not a readable ONNX file ({type(e).__name__}: {str(e)[:200]})") from None
    opset = _opset_of(shipped, path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)                       # unused entries keep a reproducible initialisation
        module = build().eval()
    fresh_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    entries, aliases, fresh = _float_entries(module, where)
    n = sum(t.numel() for _, t in entries)
    if n >= MAX_TAGS:
        raise BundleWeightsError(f"{where}: {n} weights, more than float32 can tag exactly ({MAX_TAGS - 1})")
    perm = np.random.default_rng(20240229).permutation(n)
    inverse = np.empty(n, np.int64)
    inverse[perm] = np.arange(n)
    tags_a = np.arange(1, n + 1, dtype=np.float32)
    tags_b = -(perm + 1).astype(np.float32)
    graphs = []
    with tempfile.TemporaryDirectory(prefix="despite-tags-") as tmp:
        for i, tags in enumerate((tags_a, tags_b)):
            _fill(entries, tags)
            f = Path(tmp) / f"tagged_{i}.onnx"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)     # the legacy exporter, on purpose
                    export_onnx(module, example if len(example) > 1 else example[0], f,
                            input_names if len(input_names) > 1 else input_names[0], output_names, opset)
            except Exception as e:  # noqa: BLE001 - any exporter failure
                raise BundleWeightsError(f"{where}: exporting the rebuilt module at opset {opset} failed "
                                         f"({type(e).__name__}: {str(e)[:300]})") from None
            graphs.append(onnx.load(str(f)))
    for g in (*graphs, shipped):
        _fold_identities(g.graph)
    walk = _Walk(where, n, inverse)
    walk.graph(graphs[0].graph, graphs[1].graph, shipped.graph, "", (({}, {}),) * 3)

    keys = np.concatenate(walk.keys) if walk.keys else np.zeros(0, np.int64)
    values = np.concatenate(walk.values) if walk.values else np.zeros(0, np.float32)
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    bits = values.view(np.uint32)
    dup = np.nonzero(keys[1:] == keys[:-1])[0]
    if dup.size and not (bits[dup] == bits[dup + 1]).all():
        k = int(keys[dup[np.argmin(bits[dup] == bits[dup + 1])]])
        raise walk.fail(f"weight element {_name_of(entries, k)} appears more than once with different values")
    first = np.ones(len(keys), bool)
    first[1:] = keys[1:] != keys[:-1]
    covered = np.zeros(n, bool)
    covered[keys[first]] = True
    recovered = np.zeros(n, np.float32)
    recovered[keys[first]] = values[first]

    state: dict[str, torch.Tensor] = {}
    missing, partial, reported = [], [], []
    unused: set[str] = set()
    if not covered.all():                          # which entries does the forward pass use at all?
        _fill(entries, np.concatenate([fresh_state[name].reshape(-1).float().numpy() for name, _ in entries]))
        unused = _unused(module, example, entries)
    off = 0
    for name, t in entries:
        c = covered[off:off + t.numel()]
        if c.all():
            state[name] = torch.from_numpy(recovered[off:off + t.numel()].copy()).view(t.shape).to(t.dtype)
        elif not c.any() and name in unused:
            state[name] = fresh_state[name]
            reported.append(name)
        elif not c.any():
            missing.append(name)
        else:
            partial.append(f"{name} ({int(c.sum())} of {t.numel()})")
        off += t.numel()
    if missing or partial:
        raise BundleWeightsError(f"{where}: weights used by the forward pass are not in the ONNX graph: "
                                 f"{', '.join(missing + partial)}")
    for name, target in aliases.items():
        state[name] = state[target].clone()
    for name in fresh:
        state[name] = fresh_state[name]
        reported.append(name)
    state = {k: state[k] for k in fresh_state}     # the module's own key order

    # Parity: the recovered module in PyTorch against the shipped file in ONNX Runtime.
    module.load_state_dict(state, strict=True)
    module.eval()
    try:
        opts = ort.SessionOptions()
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")   # no busy threads left behind
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        raise BundleWeightsError(f"{where}: ONNX Runtime cannot load it ({type(e).__name__}: {str(e)[:200]})") from None
    got = sess.run(None, {nm: x.numpy() for nm, x in zip(input_names, parity_inputs)})
    del sess
    with torch.no_grad():
        ref = module(*parity_inputs)
    ref = ref if isinstance(ref, (tuple, list)) else (ref,)
    if len(got) != len(output_names) or len(ref) != len(output_names):
        raise BundleWeightsError(f"{where}: {len(got)} outputs under ONNX Runtime, {len(ref)} from the recovered "
                                 f"module, expected {output_names}")
    diffs = {}
    for nm, o, r in zip(output_names, got, ref):
        r = r.numpy()
        if o.shape != r.shape:
            raise BundleWeightsError(f"{where}: output {nm!r} is {list(o.shape)} under ONNX Runtime, "
                                     f"{list(r.shape)} from the recovered module")
        d = float(np.abs(o.astype(np.float64) - r).max()) if o.size else 0.0
        if not d <= PARITY_TOL:
            raise BundleWeightsError(f"{where}: the recovered module differs from the ONNX file by {d:.3g} "
                                     f"(> {PARITY_TOL}) on {nm!r}")
        diffs[nm] = d
    return RecoveredPart(part, path.name, state, opset, diffs, reported, time.perf_counter() - t0)


def _name_of(entries, k: int) -> str:
    off = 0
    for name, t in entries:
        if k < off + t.numel():
            return f"{name}[{k - off}]"
        off += t.numel()
    return f"#{k}"


def _points(g: torch.Generator, b: int, frames: int, points: int) -> torch.Tensor:
    """Clouds on a 1/64 grid in [-0.5, 0.5]^3: squared distances are exact in float32, so ball query
    and farthest point sampling decide identically in PyTorch and ONNX Runtime."""
    return torch.randint(-32, 33, (b, frames, points, 3), generator=g).float() / 64


def _encoder_inputs(modality: str, cfg, b: int, g: torch.Generator) -> torch.Tensor:
    if modality == "pointcloud":
        return _points(g, b, cfg.pointcloud.frames, cfg.pointcloud.points)
    if modality == "imu":
        return torch.randn(b, 24, cfg.imu.input_dim, generator=g)
    if modality == "skeleton":
        return torch.randn(b, 24, cfg.skeleton.joints, 3, generator=g) * 0.3
    raise BundleWeightsError(f"no encoder part for modality {modality!r}; parts: {list(ENCODER_PARTS)}")


def recover_encoder(bundle_dir, modality: str, *, _loaded: tuple[Path, dict] | None = None) -> RecoveredPart:
    """:func:`encoder_state` with its checks' report."""
    from despite_core.onnx_export import EXPORT_BATCH
    from despite_core.models.despite import DeSPITEModel
    from despite_core.runtime.bundle import INPUT_NAMES

    root, meta = _loaded or _meta(bundle_dir)
    if modality not in ENCODER_PARTS:
        raise BundleWeightsError(f"no encoder part for modality {modality!r}; parts: {list(ENCODER_PARTS)}")
    part = f"{modality}_encoder"
    path = _part_file(root, meta, part)
    if path is None:
        raise BundleWeightsError(f"{root / 'model.yaml'}: the bundle has no {part} part (it has {list(meta['parts'])})")
    _, cfg = _config(root, meta)
    one = replace(cfg, preset=_preset_for([modality]))

    def build() -> nn.Module:
        return DeSPITEModel(one).encoders[modality]

    g = torch.Generator().manual_seed(1)
    example = (_encoder_inputs(modality, cfg, EXPORT_BATCH, g),)
    parity = (_encoder_inputs(modality, cfg, PARITY_BATCH, g),)
    return _recover(build, example, parity, path, part, [INPUT_NAMES[modality]], ["features", "embedding"])


def encoder_state(bundle_dir, modality: str) -> dict[str, torch.Tensor]:
    """The state_dict of the bundle's ``{modality}_encoder`` (keys relative to the encoder module),
    recovered exactly from its ONNX file; :class:`BundleWeightsError` when that is not possible."""
    return recover_encoder(bundle_dir, modality).state


def _head_shape(model, path: Path, part: str) -> tuple[str, int, int, int]:
    """(kind, F, M, C) of a head graph: ``mlp`` when it normalises its input (make_head's LayerNorm;
    a body-motion head normalises its features once more), else ``linear``; F, C from its input
    (batch, F) and output (batch, C), M from a second input ``body_motion`` (batch, M), 0 without one.
    The tag walk then checks the whole graph against ``make_head(kind, F, C)`` or
    ``MotionHead(kind, F, M, C)``."""
    norms = sum(n.op_type == "LayerNormalization" for n in model.graph.node)

    def dim(v):
        d = v.type.tensor_type.shape.dim
        return d[1].dim_value if len(d) == 2 and d[1].HasField("dim_value") else None

    inputs = list(model.graph.input)
    f = dim(inputs[0]) if len(inputs) in (1, 2) else None
    m = 0
    if len(inputs) == 2:
        m = dim(inputs[1]) if inputs[1].name == "body_motion" else None
    c = dim(model.graph.output[0]) if len(model.graph.output) == 1 else None
    if not f or not c or m is None:
        raise BundleWeightsError(f"{path} (part {part}): expected inputs (batch, F) [and body_motion (batch, M)] and "
                                 f"one output (batch, C) with fixed F, M and C")
    kind = "mlp" if norms > (1 if m else 0) else "linear"
    return kind, int(f), int(m), int(c)


def recover_head(bundle_dir, modality: str, *, _loaded: tuple[Path, dict] | None = None
                 ) -> tuple[str, RecoveredPart, list[str]] | None:
    """:func:`head_state` with its checks' report."""
    import onnx

    from despite_core.onnx_export import EXPORT_BATCH
    from despite_core.train.heads import FEATURE_DIM, MotionHead, make_head

    root, meta = _loaded or _meta(bundle_dir)
    part = f"{modality}_head"
    path = _part_file(root, meta, part)
    if path is None:
        return None
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001
        raise BundleWeightsError(f"{path} (part {part}): not a readable ONNX file ({type(e).__name__})") from None
    kind, f, motion, c = _head_shape(model, path, part)
    names = meta.get("class_names")
    if not isinstance(names, list) or len(names) != c:
        raise BundleWeightsError(f"{path} (part {part}): {c} logits, but model.yaml's class_names has "
                                 f"{len(names) if isinstance(names, list) else 'no'} entries")
    prov = meta.get("provenance")
    if isinstance(prov, dict) and isinstance(prov.get("config"), dict) and modality in FEATURE_DIM:
        _, cfg = _config(root, meta)
        want = FEATURE_DIM[modality](cfg)
        if want != f:
            raise BundleWeightsError(f"{path} (part {part}): the head takes {f} features, the {modality} encoder of "
                                     f"provenance.config gives {want}")
    g = torch.Generator().manual_seed(2)
    if motion:
        example = (torch.randn(EXPORT_BATCH, f, generator=g), torch.randn(EXPORT_BATCH, motion, generator=g))
        parity = (torch.randn(PARITY_BATCH, f, generator=g), torch.randn(PARITY_BATCH, motion, generator=g))
        rec = _recover(lambda: MotionHead(kind, f, motion, c), example, parity, path, part,
                       ["features", "body_motion"], ["logits"])
    else:
        example = (torch.randn(EXPORT_BATCH, f, generator=g),)
        parity = (torch.randn(PARITY_BATCH, f, generator=g),)
        rec = _recover(lambda: make_head(kind, f, c), example, parity, path, part, ["features"], ["logits"])
    rec.body_motion = motion
    return kind, rec, [str(x) for x in names]


def head_state(bundle_dir, modality: str) -> tuple[str, dict, list[str]] | None:
    """(kind ``linear`` | ``mlp``, state_dict for ``make_head(kind, F, C)``, class names) of the
    bundle's ``{modality}_head``; None when the bundle has none."""
    got = recover_head(bundle_dir, modality)
    if got is None:
        return None
    kind, rec, names = got
    return kind, rec.state, names


def checkpoint_from_bundle(bundle_dir) -> dict:
    """A pre-training checkpoint (as ``despite_core.train.checkpoint.make`` writes, kind ``pretrain``)
    with the encoders of the bundle, which ``despite_core.train.har.build`` accepts as ``init_state``;
    also ``heads`` {modality: {kind, state, class_names}} and ``source_bundle`` {path, model_id, ...}."""
    from despite_core.train import checkpoint as ckpt

    t0 = time.perf_counter()
    root, meta = _meta(Path(bundle_dir).resolve())
    raw, _ = _config(root, meta)
    mods = _encoder_modalities(meta)
    if not mods:
        raise BundleWeightsError(f"{root / 'model.yaml'}: the bundle has no encoder part "
                                 f"({', '.join(m + '_encoder' for m in ENCODER_PARTS)})")
    model, parts, heads = {}, {}, {}
    for m in mods:
        rec = recover_encoder(root, m, _loaded=(root, meta))
        model.update({f"encoders.{m}.{k}": v for k, v in rec.state.items()})
        parts[rec.part] = rec.report()
        got = recover_head(root, m, _loaded=(root, meta))
        if got is not None:
            kind, hrec, names = got
            heads[m] = {"kind": kind, "state": hrec.state, "class_names": names, "body_motion": hrec.body_motion}
            parts[hrec.part] = hrec.report()
    config = dict(raw, preset=_preset_for(mods))
    prov = meta.get("provenance") if isinstance(meta.get("provenance"), dict) else {}
    return {
        "format": ckpt.FORMAT, "version": ckpt.VERSION, "kind": "pretrain", "epoch": 0,
        "model_config": config, "model": model,
        "class_names": [str(x) for x in meta.get("class_names") or []],
        "imu_layout": meta.get("imu_layout"),
        "store": str(prov.get("data", "")),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "args": {"from_bundle": str(root)},
        "heads": heads,
        "source_bundle": {"path": str(root), "model_id": meta.get("model_id"),
                          "checkpoint": str(prov.get("checkpoint", "")), "temperature": meta.get("temperature"),
                          "parts": parts, "seconds": round(time.perf_counter() - t0, 3)},
    }
