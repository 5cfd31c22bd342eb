"""How the model trained on procedural motion labels real motion capture, per class (issue 17).

Real motion: DeepMimic's humanoid3d clips (retargeted motion capture), which pybullet's wheel ships
under the zlib licence. Fetch that wheel once from PyPI (nothing here downloads anything):

    .venv/bin/pip download pybullet==3.2.7 --no-deps -d downloads/
    .venv/bin/python bench/real_motion.py --pybullet downloads/pybullet-3.2.7-*.whl

Each clip that shows one of the model's classes becomes a BVH file (despite_core.data.importers.deepmimic)
with its labels (clip time), and drives one person of `despite synth --edition 2 --bvh CLIP --bvh-labels CSV`
(the clip repeats, continuing where it ended; rooms, bodies' girth, LiDAR mountings and IMU errors drawn
from --seed). The get-up clips start lying on the floor: their first pose is held 3 s (`lying`) and the
last 2 s (`stand`). The travelling clips of in-place classes (jump, punch, kick, spin kick) are also
played in place (`<clip>_inplace`: the root's horizontal travel removed), to tell the travel from the
movement. Beside them, procedural scenes of the same settings (one person, same LiDAR, new seed)
give the same model's per-class recall on the motion it was trained on. Both are scored by `despite eval
har --model` on every window (stride 1) for the point-cloud head and the IMU model.
Writes OUT/real_motion.json and OUT/real_motion.md.

--after: then fine-tune the bundle's point-cloud encoder and head with such motion in training, by the
README's own-recordings recipe (train har --init BUNDLE, head 0.01, encoder 3e-05, 6 epochs, loss over the
seen classes), on AFTER_MINUTES of 8-person scenes (seed SEED+20, every scene its own LiDAR: --lidar-mix):
persons 1-6 driven by the TRAIN_CLIPS, 7-8 procedural (so the procedural classes stay in training). The
held-out motions are HELD_OUT (a kick and a get-up the training never saw; their class is trained on the
other clip); the other clips are scored on the test scenes above (new rooms, girths, LiDARs: same motion).
Writes OUT/after.json and OUT/after.md (before / after per clip and on the procedural scenes).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from despite_core.data.importers.deepmimic import clip_to_bvh, load_deepmimic
from despite_core.data.store import Store

# clip -> (its class, seconds held at the start, at the end); "<clip>_inplace": the same clip with the root's
# horizontal travel removed (the in-place activities whose real clips travel: is the travel what misleads?)
CLIPS = {
    "walk": ("walk", 0.0, 0.0),
    "run": ("run", 0.0, 0.0),
    "jump": ("jump", 0.0, 0.0),
    "punch": ("punch", 0.0, 0.0),
    "kick": ("kick", 0.0, 0.0),
    "spinkick": ("kick", 0.0, 0.0),
    "getup_faceup": ("get up", 3.0, 2.0),
    "getup_facedown": ("get up", 3.0, 2.0),
    "jump_inplace": ("jump", 0.0, 0.0),
    "punch_inplace": ("punch", 0.0, 0.0),
    "kick_inplace": ("kick", 0.0, 0.0),
    "spinkick_inplace": ("kick", 0.0, 0.0),
}
TRAIN_CLIPS = ("walk", "run", "jump", "punch", "kick", "getup_faceup")
HELD_OUT = ("spinkick", "getup_facedown")


def run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")


def motions_dir(source: Path, out: Path) -> Path:
    """The humanoid3d motion files: unpacked from the wheel into OUT/motions, or a folder as given."""
    if source.is_dir():
        return source
    if not zipfile.is_zipfile(source):
        sys.exit(f"{source}: neither a folder of humanoid3d_*.txt files nor pybullet's wheel")
    dest = out / "motions"
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(source) as z:
        for name in z.namelist():
            if name.startswith("pybullet_data/data/motions/humanoid3d_") and name.endswith(".txt"):
                (dest / Path(name).name).write_bytes(z.read(name))
    return dest


def whole_split(store: Path) -> None:
    """A split scheme 'all' whose test split is every sequence (the mocap is not split by subject)."""
    ids = Store(store).sequence_ids
    (store / "splits" / "all.json").write_text(json.dumps({"test": ids, "train": [], "val": []}, indent=1))


def evaluate(store: Path, model: Path, out: Path, modality: str) -> dict:
    if (out / "har.json").is_file() and (out / "model.txt").is_file() and (out / "model.txt").read_text() == str(model):
        return json.loads((out / "har.json").read_text())
    run([sys.executable, "-m", "despite_core.cli", "eval", "har", "--model", str(model), "--store", str(store),
         "--modality", modality, "--split-scheme", "all", "--split", "test", "--stride", "1", "--out", str(out),
         "--quiet"])
    (out / "model.txt").write_text(str(model))
    return json.loads((out / "har.json").read_text())


def synth(store: Path, *extra: str) -> None:
    """`despite synth` into ``store`` with a whole-store split, unless it is there already (resumable)."""
    if not (store / "splits" / "all.json").is_file():
        run([sys.executable, "-m", "despite_core.cli", "synth", "--out", str(store), "--edition", "2",
             "--scene-minutes", "0.5", "--overwrite", "--quiet", *extra])
        whole_split(store)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--pybullet", type=Path, required=True,
                    help="pybullet's wheel (pip download pybullet==3.2.7 --no-deps) or a folder of humanoid3d_*.txt")
    ap.add_argument("--out", type=Path, default=Path("runs/real_motion"))
    ap.add_argument("--model", type=Path, default=Path("models/default"))
    ap.add_argument("--minutes", type=float, default=2.0, help="simulated minutes per clip (30-s scenes)")
    ap.add_argument("--procedural-minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=940, help="seeds SEED.. (one per clip) and SEED+50 (procedural)")
    ap.add_argument("--beams", type=int, nargs="+", default=[64, 16])
    ap.add_argument("--after", action="store_true", help="then fine-tune with mocap in training and score again")
    ap.add_argument("--after-minutes", type=float, default=5.0, help="minutes of 8-person training scenes")
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    src = motions_dir(args.pybullet, out)
    bvh_dir = out / "bvh"
    bvh_dir.mkdir(exist_ok=True)
    rows = ["file,start_s,end_s,label"]
    clips = {}
    for name, (label, hold0, hold1) in CLIPS.items():
        base = name.removesuffix("_inplace")
        path = src / f"humanoid3d_{base}.txt"
        if not path.is_file():
            sys.exit(f"{path} is missing: is {args.pybullet} pybullet 3.2.7's wheel (or its motions folder)?")
        clip = load_deepmimic(path)
        span = clip.frame_time * (len(clip.durations) - 1)
        (bvh_dir / f"{name}.bvh").write_text(clip_to_bvh(clip, hold_start_s=hold0, hold_end_s=hold1,
                                                         in_place=name != base))
        if hold0:
            rows.append(f"{name}.bvh,0,{hold0:.3f},lying")
        rows.append(f"{name}.bvh,{hold0:.3f},{hold0 + span:.3f},{label}")
        if hold1:
            rows.append(f"{name}.bvh,{hold0 + span:.3f},{hold0 + span + hold1 + 1:.3f},stand")
        clips[name] = {"label": label, "seconds": round(span, 2), "frames": len(clip.durations), "loop": clip.loop}
    (out / "labels.csv").write_text("\n".join(rows) + "\n")
    result: dict = {"clips": clips, "model": str(args.model), "seed": args.seed, "minutes_per_clip": args.minutes,
                    "by_beams": {}}
    for beams in args.beams:
        per: dict = {"mocap": {}, "procedural": {}}
        for k, name in enumerate(CLIPS):
            store = out / f"{beams}_beams" / f"store_{name}"
            synth(store, "--people", "1", "--bvh", str(bvh_dir / f"{name}.bvh"), "--bvh-labels",
                  str(out / "labels.csv"), "--minutes", str(args.minutes), "--seed", str(args.seed + k),
                  "--lidar-beams", str(beams))
            per["mocap"][name] = {m: evaluate(store, args.model, store.parent / f"eval_{name}_{m}", m)
                                  for m in ("pointcloud", "imu")}
            print(f"{beams} beams, {name}: point clouds {per['mocap'][name]['pointcloud']['accuracy']:.3f}, "
                  f"IMU {per['mocap'][name]['imu']['accuracy']:.3f}", flush=True)
        store = out / f"{beams}_beams" / "store_procedural"
        synth(store, "--people", "1", "--minutes", str(args.procedural_minutes), "--seed", str(args.seed + 50),
              "--lidar-beams", str(beams))
        per["procedural"] = {m: evaluate(store, args.model, store.parent / f"eval_procedural_{m}", m)
                             for m in ("pointcloud", "imu")}
        result["by_beams"][str(beams)] = per
    (out / "real_motion.json").write_text(json.dumps(result, indent=1))
    (out / "real_motion.md").write_text(table(result))
    print(table(result))
    if args.after:
        after(args, out, bvh_dir, result)
    return 0


def after(args: argparse.Namespace, out: Path, bvh_dir: Path, before: dict) -> None:
    train = out / "after" / "train_store"
    synth(train, "--people", "8", "--bvh", *[str(bvh_dir / f"{c}.bvh") for c in TRAIN_CLIPS],
          "--bvh-labels", str(out / "labels.csv"), "--minutes", str(args.after_minutes),
          "--seed", str(args.seed + 20), "--lidar-mix")
    ft = out / "after" / "ft"
    if not (ft / "har.pt").is_file():
        run([sys.executable, "-m", "despite_core.cli", "train", "har", "--store", str(train), "--out", str(ft),
             "--init", str(args.model), "--modality", "pointcloud", "--head", "mlp", "--epochs", "6",
             "--batch-size", "32", "--lr", "0.01", "--encoder-lr", "3e-05", "--stride", "3", "--eval-stride", "3",
             "--train-split", "all", "--test-store",
             str(out / f"{args.beams[0]}_beams" / "store_procedural"), "--test-split", "all", "--threads", "2",
             "--quiet"])
    bundle = out / "after" / "bundle"
    if not (bundle / "model.yaml").is_file():
        run([sys.executable, "-m", "despite_core.cli", "export", "--base-model", str(args.model), "--har",
             str(ft / "har.pt"), "--store", str(train), "--out", str(bundle), "--model-id", "v3-plus-mocap"])
    res: dict = {"train_clips": TRAIN_CLIPS, "held_out": HELD_OUT, "by_beams": {}}
    lines = []
    for beams in args.beams:
        d = out / f"{beams}_beams"
        per = {name: evaluate(d / f"store_{name}", bundle, d / f"after_{name}", "pointcloud") for name in CLIPS}
        per["procedural"] = evaluate(d / "store_procedural", bundle, d / "after_procedural", "pointcloud")
        res["by_beams"][str(beams)] = per
        b = before["by_beams"][str(beams)]
        lines += [f"\n{beams} beams, point clouds: recall before (bundle) -> after (fine-tuned with mocap)",
                  "| clip | motion in training | class | windows | before | after |", "|---|---|---|---:|---|---|"]
        for name in CLIPS:
            for cls in per[name]["class_names"]:
                a, bb = _recall(per[name], cls), _recall(b["mocap"][name]["pointcloud"], cls)
                if a is None:
                    continue
                base = name.removesuffix("_inplace")
                seen = ("no (held out)" if base in HELD_OUT else "yes, other scenes") + (", in place" if base != name else "")
                lines.append(f"| {name} | {seen} | {cls} | {a[1]} | {_fmt(bb)} | {_fmt(a)} |")
        lines.append(f"| procedural scenes | - | all | {per['procedural']['windows']} | "
                     f"{b['procedural']['pointcloud']['accuracy']:.3f} | {per['procedural']['accuracy']:.3f} |")
    (out / "after.json").write_text(json.dumps(res, indent=1))
    (out / "after.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _recall(res: dict, cls: str) -> tuple[float, int] | None:
    """(recall, windows) of class ``cls`` in one eval result, None when it has no window of it."""
    rec = res["per_class_recall"].get(cls)
    if rec is None:
        return None
    names = res["class_names"]
    n = int(sum(res["confusion"][names.index(cls)]))
    return (float(rec), n) if n else None


def _fmt(x: tuple[float, int] | None) -> str:
    return f"{x[0]:.2f}" if x else "-"


def table(result: dict) -> str:
    lines = []
    for beams, per in result["by_beams"].items():
        lines += [f"\n{beams} beams: recall per clip (windows), mocap / procedural of the same class",
                  "| clip | class | windows | point clouds: mocap | procedural | IMU: mocap | procedural |",
                  "|---|---|---:|---|---|---|---|"]
        for name, info in result["clips"].items():
            mo_pc, mo_imu = per["mocap"][name]["pointcloud"], per["mocap"][name]["imu"]
            for cls in mo_pc["class_names"]:
                pc = _recall(mo_pc, cls)
                if pc is None:
                    continue
                imu = _recall(mo_imu, cls)
                pr_pc, pr_imu = (_recall(per["procedural"][m], cls) for m in ("pointcloud", "imu"))
                lines.append(f"| {name} | {cls} | {pc[1]} | {_fmt(pc)} | {_fmt(pr_pc)} | {_fmt(imu)} | {_fmt(pr_imu)} |")
        for m in ("pointcloud", "imu"):
            accs = {n: per["mocap"][n][m]["accuracy"] for n in result["clips"]}
            lines.append(f"\n{m}: mocap accuracy over all its windows per clip "
                         + ", ".join(f"{n} {a:.2f}" for n, a in accs.items())
                         + f"; procedural scenes {per['procedural'][m]['accuracy']:.3f} over "
                           f"{per['procedural'][m]['windows']} windows")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
