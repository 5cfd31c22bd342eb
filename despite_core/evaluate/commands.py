"""`despite eval matching | retrieval | har`: each writes a JSON next to its plots."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from despite_core.data.store import Store


EMBEDDER = "a pre-training checkpoint (last.pt), or a bundle directory (its encoders recovered from the ONNX parts)"


def _common(p: argparse.ArgumentParser, checkpoint_required: bool = True, checkpoint_help: str = EMBEDDER) -> None:
    p.add_argument("--checkpoint", type=Path, required=checkpoint_required, help=checkpoint_help)
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="directory for the JSON and plots")
    p.add_argument("--split-scheme", default="by_subject")
    p.add_argument("--split", default="test")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quiet", action="store_true")


def add_arguments(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("matching", help="cross-modal matching accuracy against scene size N (reference protocol)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _common(m)
    m.add_argument("--scenes", type=int, default=1000)
    m.add_argument("--sizes", default="2,4,8,12,16,20,24,28,32", help="scene sizes N")
    m.add_argument("--windows", default="1,2,4", help="consecutive windows w per entry")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--write-metrics", action="store_true",
                   help="with a bundle as --checkpoint: also record the result (one window, N = 2, 4, 8, 32) as "
                        "metrics.matching in its model.yaml, replacing figures an export carried over from a base")
    m.set_defaults(func=run_matching)
    r = sub.add_parser("retrieval", help="temporal retrieval within sequences (recall@1/5 within +-k frames)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _common(r)
    r.set_defaults(func=run_retrieval)
    h = sub.add_parser("har", help="activity recognition of a `despite train har` checkpoint or an exported bundle",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _common(h, checkpoint_required=False, checkpoint_help="a `despite train har` checkpoint (har.pt)")
    h.add_argument("--model", type=Path, default=None,
                   help="an exported bundle, run through the ONNX runtime instead of --checkpoint")
    h.add_argument("--modality", default="pointcloud", choices=("pointcloud", "imu"), help="with --model: whose head")
    h.add_argument("--stride", type=int, default=1)
    h.add_argument("--zero-shot", action="store_true",
                   help="with --model: label by the nearest text query (open vocabulary) instead of the trained head; "
                        "every query label must be one of the store's classes")
    h.add_argument("--write-metrics", action="store_true",
                   help="with --model: also record the result in the bundle's model.yaml metrics "
                        "(key <modality>_har_onnx or <modality>_zero_shot)")
    h.set_defaults(func=run_har)
    from despite_core.evaluate import perception

    q = sub.add_parser("perception", help="the live perception over a matrix of simulated scenes: coverage, recall, "
                       "false tracks, id switches", description=(perception.__doc__ or "").strip().splitlines()[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    perception.add_arguments(q)
    q.set_defaults(func=perception.run)
    from despite_core.evaluate import waterfall

    w = sub.add_parser("waterfall", help="where activity accuracy is lost: joints, IMU, point clouds with "
                       "ground-truth segmentation, live, on the same held-out windows",
                       description=(waterfall.__doc__ or "").strip().split("\n\n")[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    waterfall.add_arguments(w)
    w.set_defaults(func=waterfall.main)


def _embed(args):
    import torch

    from despite_core.evaluate.embed import embed_split, load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    from despite_core.train.checkpoint import imu_layout_of

    model, state = load_model(str(args.checkpoint))
    store = Store(args.store)
    return embed_split(model, store, args.split_scheme, args.split, progress=not args.quiet,
                       imu_layout=imu_layout_of(state)), state


def run_matching(args: argparse.Namespace) -> dict:
    from despite_core.evaluate.matching import MatchingConfig, evaluate_matching, plot_matching

    if getattr(args, "write_metrics", False) and not (Path(args.checkpoint) / "model.yaml").is_file():
        raise ValueError("--write-metrics records the figures in a bundle's model.yaml: give the bundle directory "
                         f"as --checkpoint ({args.checkpoint} has no model.yaml)")
    cfg = MatchingConfig(sizes=tuple(int(x) for x in args.sizes.split(",")),
                         windows=tuple(int(x) for x in args.windows.split(",")), scenes=args.scenes, seed=args.seed)
    emb, state = _embed(args)
    res = evaluate_matching(emb, cfg, progress=not args.quiet)
    res.update({"checkpoint": str(args.checkpoint), "preset": state["model_config"]["preset"], "store": str(args.store),
                "split": f"{args.split_scheme}/{args.split}", "windows_embedded": int(len(emb.seq)),
                "sequences": len(emb.sequence_ids)})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "matching.json").write_text(json.dumps(res, indent=1))
    plot_matching(res, str(args.out / "matching.png"))
    if getattr(args, "write_metrics", False):
        import yaml

        from despite_core.export import collect_metrics

        meta_path = Path(args.checkpoint) / "model.yaml"
        meta = yaml.safe_load(meta_path.read_text())
        meta.setdefault("metrics", {})["matching"] = collect_metrics([], args.out / "matching.json")["matching"] | {
            "command": f"despite eval matching --checkpoint DIR --store {args.store} --split-scheme {args.split_scheme} "
                       f"--split {args.split} --scenes {args.scenes} --sizes {args.sizes} --windows {args.windows} "
                       f"--seed {args.seed} --write-metrics"}     # replaces the base's, and its note
        meta_path.write_text(yaml.safe_dump(meta, sort_keys=False, width=120))
    return summarise_matching(res)


def summarise_matching(res: dict, sizes=(8, 32), windows=(1, 4)) -> dict:
    out = {}
    for pair, r in res["pairs"].items():
        for w in windows:
            for n in sizes:
                e = r.get("all", {}).get(f"w{w}", {}).get(f"N{n}")
                if e:
                    same = r.get("same_activity", {}).get(f"w{w}", {}).get(f"N{n}", {})
                    out[f"{pair} N{n} w{w}"] = {"learned": round(e["accuracy"], 3), "shortcut": round(e.get("shortcut", float("nan")), 3),
                                                "same_activity": round(same.get("accuracy", float("nan")), 3), "chance": round(1 / n, 3)}
    return out


def run_retrieval(args: argparse.Namespace) -> dict:
    from despite_core.evaluate.retrieval import evaluate_retrieval

    emb, state = _embed(args)
    res = {"checkpoint": str(args.checkpoint), "preset": state["model_config"]["preset"], **evaluate_retrieval(emb)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval.json").write_text(json.dumps(res, indent=1))
    return res


def run_har(args: argparse.Namespace) -> dict:
    import torch

    from despite_core.evaluate.har import har_metrics, plot_confusion, segment_ids
    from despite_core.models.despite import DeSPITEConfig, DeSPITEModel
    from despite_core.train import checkpoint as ckpt
    from despite_core.train.data import WindowDataset, split_ids
    from despite_core.train.har import FEATURE_DIM, HarModel, encoder_config, predict

    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.model is None) == (args.checkpoint is None):
        raise ValueError("despite eval har needs exactly one of --checkpoint (PyTorch) or --model (bundle)")
    if args.model is not None:
        return _run_har_bundle(args)
    if args.zero_shot or args.write_metrics:
        raise ValueError("--zero-shot and --write-metrics need --model (a bundle)")
    state = ckpt.load(args.checkpoint, expect_kind="har")
    modality = state["modality"]
    cfg = encoder_config(DeSPITEConfig.from_dict(state["model_config"]), modality)
    store = Store(args.store)
    if list(store.class_names) != list(state["class_names"]):
        raise ckpt.CheckpointError(f"{args.checkpoint}: trained on classes {state['class_names'][:5]}..., "
                                   f"the store has {list(store.class_names)[:5]}...")
    motion = int(state.get("body_motion") or 0)
    model = HarModel(DeSPITEModel(cfg).encoders[modality], FEATURE_DIM[modality](cfg), len(store.class_names),
                     state.get("head", "linear"), motion)
    model.load_state_dict(state["model"])
    ds = WindowDataset(store, split_ids(store, args.split_scheme, args.split), (modality,), stride=args.stride,
                       cache_dir=store.root / ".cache", imu_layout=ckpt.imu_layout_of(state), body_motion=bool(motion))
    scores = predict(model, ds, modality)
    seq = np.array([k for k, _ in ds.windows])
    metrics = har_metrics(scores, ds.labels, store.class_names, groups=segment_ids(seq, ds.labels))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "har.json").write_text(json.dumps({"checkpoint": str(args.checkpoint), "modality": modality, **metrics}, indent=1))
    plot_confusion(metrics, str(args.out / "confusion.png"))
    return {k: metrics[k] for k in ("accuracy", "macro_f1", "windows", "ambiguous", "group_accuracy")}


def _run_har_bundle(args: argparse.Namespace) -> dict:
    """The same windows and metrics as the checkpoint path, through the online runtime (ONNX Runtime)."""
    from despite_core.evaluate.har import har_metrics, plot_confusion, segment_ids
    from despite_core.train.data import WindowDataset, collate, split_ids

    from despite_core.runtime.inference import Runtime
    rt = Runtime(args.model, threads=args.threads)
    store = Store(args.store)
    names = rt.bundle.class_names
    unknown = [c for c in store.class_names if c not in names]
    if unknown:
        raise ValueError(f"{args.model}: the store's classes {unknown} are not classes of the bundle {names}")
    # the store's classes may be fewer (an edition-1 store, a model that also knows falls): scored in the
    # bundle's class space, each store label mapped by name
    to_bundle = np.array([names.index(c) for c in store.class_names], np.int64)
    motion = not args.zero_shot and rt.needs_body_motion(args.modality)
    ds = WindowDataset(store, split_ids(store, args.split_scheme, args.split), (args.modality,), stride=args.stride,
                       cache_dir=store.root / ".cache", imu_layout=rt.bundle.imu_layout, body_motion=motion)
    if args.zero_shot:
        labels = rt.text_labels
        if labels is None:
            raise ValueError(f"{args.model}: the bundle holds no text queries (export with --text-queries)")
        unknown = sorted(set(labels) - set(names))
        if unknown:
            raise ValueError(f"{args.model}: text-query labels {unknown} are not classes of the bundle; "
                             "zero-shot accuracy needs every label to name a class")
        vocab = [names.index(lb) for lb in labels]
    scores = []
    for i in range(0, len(ds), 64):
        batch = collate([ds[j] for j in range(i, min(i + 64, len(ds)))])
        if args.zero_shot:
            emb = rt.encode(args.modality, batch[args.modality].numpy())[1]
            probs = np.zeros((len(emb), len(names)), np.float32)
            probs[:, vocab] = rt.zero_shot(emb)[1]               # classes outside the vocabulary score 0
            scores.append(probs)
        else:
            scores.append(rt.scores(args.modality, batch[args.modality].numpy(),
                                    batch["body_motion"].numpy() if motion else None))
    scores = np.concatenate(scores)
    seq = np.array([k for k, _ in ds.windows])
    truth = np.where(ds.labels >= 0, to_bundle[np.maximum(ds.labels, 0)], -1)
    metrics = har_metrics(scores, truth, names, groups=segment_ids(seq, truth))
    kind = "zero_shot" if args.zero_shot else "har_onnx"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "har.json").write_text(json.dumps({"model": str(args.model), "model_id": rt.bundle.meta["model_id"],
                                                   "provider": rt.provider, "modality": args.modality, "kind": kind,
                                                   **metrics}, indent=1))
    plot_confusion(metrics, str(args.out / "confusion.png"))
    summary = {k: metrics[k] for k in ("accuracy", "macro_f1", "windows", "ambiguous", "group_accuracy")}
    if args.write_metrics:
        import yaml

        meta_path = Path(args.model) / "model.yaml"
        meta = yaml.safe_load(meta_path.read_text())
        meta["metrics"][f"{args.modality}_{kind}"] = {
            "accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro_f1"], 4),
            "windows": metrics["windows"], "split": f"{args.split_scheme}/{args.split}", "stride": args.stride,
            "command": f"despite eval har --model DIR --modality {args.modality}{' --zero-shot' if args.zero_shot else ''} "
                       f"--stride {args.stride}"}
        meta_path.write_text(yaml.safe_dump(meta, sort_keys=False, width=120))
    return summary | {"provider": rt.provider, "kind": kind}
