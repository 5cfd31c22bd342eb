"""Planted faults the test suite must catch (targeted mutation testing).

Each mutant is one small source edit in an installed module (despite_core or despite_ros). The
edit is applied to a COPY of the package in a temporary overlay directory that is put first on
PYTHONPATH of a child pytest, so the installed tree is never touched and the node processes the
tests start see the mutant too. A mutant is "caught" only when pytest reports failed tests (exit
status 1); its tests passing (0) is "survived", and any other outcome (2 interrupted or collection
error, 4 usage error or test id not found, 5 no tests collected, a timeout, the overlay not
imported) is an ERROR of the mutant run, never a catch: a renamed or deleted test cannot silently
retire a mutant. `check_tests` collects every mutant's test ids before anything runs.

    .venv/bin/python bench/mutants.py              # every mutant (a few minutes), table on stdout
    .venv/bin/python bench/mutants.py --fast       # the quick ones (the subset make test runs)
    .venv/bin/python bench/mutants.py --only fps-first-points --markdown

Exit status 1 when a mutant survives (its tests pass with the fault planted) or its run is an
ERROR; 2 when an edit site or a test id is missing.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    module: str            # dotted module whose file is edited
    old: str               # must occur exactly once in that file
    new: str
    tests: tuple[str, ...]
    fast: bool = False


MUTANTS: tuple[Mutant, ...] = (
    Mutant("pretrain-step-noop", "pre-training optimiser step is a no-op", "despite_core.train.pretrain",
           "            optim.step()\n            steps += 1", "            steps += 1",
           ("test/test_train.py::test_pretraining_learns",)),
    Mutant("har-step-noop", "HAR training optimiser step is a no-op", "despite_core.train.har",
           "            optim.step()\n            step += 1", "            step += 1",
           ("test/test_train.py::test_har_head_learns",)),
    Mutant("gradients-detached", "pre-training gradients detached from the loss", "despite_core.train.pretrain",
           "            total.backward()", "            total.detach().requires_grad_(True).backward()",
           ("test/test_train.py::test_pretraining_learns",)),
    Mutant("resume-no-weights", "resume restores no weights", "despite_core.train.pretrain",
           "        model.load_state_dict(state[\"model\"])\n", "",
           ("test/test_train.py::test_resume_takes_the_uninterrupted_runs_steps",)),
    Mutant("temperature-ignored", "InfoNCE temperature ignored", "despite_core.losses",
           "logits = a @ b.t() / temperature", "logits = a @ b.t()",
           ("test/test_losses.py",), fast=True),
    Mutant("text-mask-inverted", "text mask inverted (unannotated windows aligned to text)", "despite_core.losses",
           "mask = gather_with_grad(text_mask.to(torch.bool))", "mask = gather_with_grad(~text_mask.to(torch.bool))",
           ("test/test_losses.py",), fast=True),
    Mutant("wearer-assignment-random", "wearer assignment ignores the similarities", "despite_core.runtime.pipeline",
           "rows, cols = linear_sum_assignment(-similarity)",
           # a fixed seed: the same wrong assignment every run (an unseeded one matched by chance 1 run in ~48)
           "rows, cols = linear_sum_assignment(np.random.default_rng(0).normal(size=similarity.shape))",
           ("test/test_matching.py",), fast=True),
    Mutant("zero-shot-wrong-label", "zero-shot phrases summed under the wrong label", "despite_core.runtime.inference",
           "    member[np.arange(len(labels)), [vocab.index(lb) for lb in labels]] = 1",
           "    member[np.arange(len(labels)), [(vocab.index(lb) + 1) % len(vocab) for lb in labels]] = 1",
           ("test/test_matching.py",), fast=True),
    Mutant("background-absorption-off", "the background never absorbs a static object", "despite_core.runtime.perception",
           "        sel = counts >= scans\n", "        sel = counts < 0\n",
           ("test/test_perception.py::test_a_static_object_that_appears_is_absorbed_into_the_background",),
           fast=True),
    Mutant("farther-adoption-off", "the background never takes farther returns (a moved object stays)",
           "despite_core.runtime.perception",
           "            ready = farther & (self.far_run[pix] >= self.FARTHER_SCANS)",
           "            ready = farther & False",
           ("test/test_perception.py::test_farther_returns_replace_what_was_moved_away",), fast=True),
    Mutant("assignment-forced", "the tracker matches as many tracks as it can (swaps two people to match one more)",
           "despite_core.runtime.perception",
           "    gain = np.where(inside, cost - unmatched[:, None], 0.0)",
           "    gain = np.where(inside, cost - 1e6, 0.0)",
           ("test/test_perception.py::test_a_track_left_unmatched_for_a_scan_does_not_swap_two_people",), fast=True),
    Mutant("lost-tracks-not-competing", "lost tracks left out of the first association (only revived afterwards)",
           "despite_core.runtime.perception",
           "        row_gates = np.concatenate([np.full(len(ks), c.track_gate), gates])",
           "        row_gates = np.concatenate([np.full(len(ks), c.track_gate), 0 * gates - 1])",
           ("test/test_perception.py::test_a_lost_track_beside_its_person_keeps_a_coasting_neighbour_off_them",),
           fast=True),
    Mutant("thin-gate-off", "a head over someone's shoulder (a thin cluster) never continues its track",
           "despite_core.runtime.perception",
           "            if self._thin(h, is_cut) and beside_track():",
           "            if False:",
           ("test/test_perception.py::test_a_head_over_someone_s_shoulder_continues_its_track",), fast=True),
    Mutant("fps-first-points", "farthest point sampling replaced by the first 256 points", "despite_core.data.sampling",
           "    return _fps(pts, k, start)\n", "    return np.arange(k)\n",
           ("test/test_data_core.py", "test/test_ops.py"), fast=True),
    Mutant("imu-frame-skipped", "IMU acceleration left in the sensor frame", "despite_core.runtime.buffers",
           "        acc = np.einsum(\"nij,nj->ni\", rot, acc)", "        acc = acc",
           ("test/test_buffers.py",), fast=True),
    Mutant("frame-selection-off-by-one", "frame selection skips one model period", "despite_core.runtime.buffers",
           "self.next_k = int((stamp_ns - self.origin + early) // period) + 1",
           "self.next_k = int((stamp_ns - self.origin + early) // period) + 2",
           ("test/test_buffers.py",), fast=True),
    Mutant("fall-alert-body-check-off", "the fall alert ignores whether the body went down", "despite_core.runtime.fusion",
           "        return top - newest.z >= self.cfg.alert_min_drop_m and newest.height <= self.cfg.alert_max_height_m\n",
           "        return True\n", ("test/test_fusion.py",), fast=True),
    Mutant("fall-alert-early-length-off", "the early fall alert ignores whether the body lies along the floor",
           "despite_core.runtime.fusion", "                and tr.body[-1].length >= self.cfg.alert_min_length_m)",
           "                and True)", ("test/test_fusion.py",), fast=True),
    Mutant("down-gate-predictions-only", "a body down on the floor is looked for only at the live tracks' predictions",
           "despite_core.runtime.perception",
           "        return np.concatenate([predicted.reshape(-1, 2), np.array(last + lost, np.float64).reshape(-1, 2)])",
           "        return predicted.reshape(-1, 2)",
           ("test/test_perception.py::test_a_person_lost_while_falling_is_taken_up_again_lying_with_the_same_id",),
           fast=True),
    Mutant("revived-track-forgets-its-fall", "a track taken up again starts without its segments and body frames",
           "despite_core.runtime.fusion",
           "                tr.history, tr.body, tr.alert = back.history, back.body, back.alert",
           "                pass",
           ("test/test_fusion.py::test_fall_alert_when_the_track_is_lost_while_falling_and_taken_up_again_lying",),
           fast=True),
)


def module_file(module: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise SystemExit(f"cannot find module {module}: run `make install` first")
    return Path(spec.origin)


def check_sites() -> list[str]:
    """Problems with the mutants' edit sites (each `old` must occur exactly once)."""
    bad = []
    for m in MUTANTS:
        n = module_file(m.module).read_text().count(m.old)
        if n != 1:
            bad.append(f"{m.name}: its edit site occurs {n} times in {m.module} (expected once)")
    return bad


PYTEST = Path(sys.executable).with_name("pytest")   # the venv's script, not `python -m pytest` (source tree first)


def check_tests() -> list[str]:
    """Problems with the mutants' test ids: each must collect at least one test (installed code, no
    mutant). One `pytest --collect-only` over all of them; a missing id is reported by name."""
    ids = sorted({t for m in MUTANTS for t in m.tests})
    out = subprocess.run([str(PYTEST), "--collect-only", "-q", *ids], cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    collected = [ln.strip() for ln in out.stdout.splitlines() if "::" in ln]
    bad = []
    for m in MUTANTS:
        for t in m.tests:
            hits = [c for c in collected if c == t or c.startswith(t + "::") or c.startswith(t + "[")]
            if not hits:
                bad.append(f"{m.name}: its test {t} collects no test")
    if out.returncode != 0 and not bad:
        tail = (out.stdout + out.stderr).strip().splitlines()[-3:]
        bad.append(f"collecting the mutants' tests exited {out.returncode}: {' | '.join(tail)}")
    return bad


def outcome(rc: int | None, overlay_used: bool) -> str:
    """pytest's exit status under a mutant -> caught / survived / error (only 1 = tests failed is a catch)."""
    if not overlay_used:
        return "error"          # the child did not import the mutant: its verdict says nothing
    return {1: "caught", 0: "survived"}.get(rc, "error")


EXIT_MEANING = {0: "tests passed", 1: "tests failed", 2: "interrupted or collection error", 3: "internal error",
                4: "usage error or test id not found", 5: "no tests collected", None: "timed out"}


def run_mutant(m: Mutant, timeout: float = 900) -> dict:
    src = module_file(m.module)
    package = m.module.split(".")[0]
    pkg_dir = module_file(package).parent
    with tempfile.TemporaryDirectory(prefix=f"mutant-{m.name}-") as tmp:
        overlay = Path(tmp) / package
        shutil.copytree(pkg_dir, overlay, ignore=shutil.ignore_patterns("__pycache__"))
        target = overlay / src.relative_to(pkg_dir)
        text = target.read_text()
        if text.count(m.old) != 1:
            return {"name": m.name, "what": m.what, "tests": ", ".join(m.tests), "outcome": "error",
                    "caught": False, "overlay_used": False, "exit": None, "detail": "edit site not found once",
                    "seconds": 0.0}
        target.write_text(text.replace(m.old, m.new))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([tmp, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                   PYTHONDONTWRITEBYTECODE="1")
        t0 = time.perf_counter()
        try:
            out = subprocess.run([str(PYTEST), "-x", "-q", *m.tests], cwd=REPO, env=env, capture_output=True,
                                 text=True, timeout=timeout)
            rc, tail = out.returncode, (out.stdout + out.stderr).strip().splitlines()[-1:]
        except subprocess.TimeoutExpired:
            rc, tail = None, [f"timed out after {timeout:.0f} s"]
        seconds = time.perf_counter() - t0
        # sanity: the child really imported the mutant (and not the installed module)
        probe = subprocess.run([sys.executable, "-c", f"import {m.module} as x; print(x.__file__)"], env=env,
                               capture_output=True, text=True, timeout=120, cwd="/")
        used = probe.stdout.strip().startswith(tmp)
    verdict = outcome(rc, used)
    detail = tail[0] if tail else ""
    if verdict == "error":
        why = "the overlay was not imported" if not used else f"pytest exit {rc}: {EXIT_MEANING.get(rc, 'unknown')}"
        detail = f"{why}; {detail}"
    return {"name": m.name, "what": m.what, "tests": ", ".join(m.tests), "outcome": verdict,
            "caught": verdict == "caught", "overlay_used": used, "exit": rc, "detail": detail,
            "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fast", action="store_true", help="only the mutants whose tests take seconds")
    p.add_argument("--only", action="append", default=[], help="run this mutant (repeatable)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    a = p.parse_args(argv)
    if a.list:
        for m in MUTANTS:
            print(f"{m.name:28s} {'fast' if m.fast else '    '}  {m.what}  [{', '.join(m.tests)}]")
        return 0
    bad = check_sites() or check_tests()
    if bad:
        print("\n".join(bad), file=sys.stderr)
        return 2
    unknown = [n for n in a.only if n not in {m.name for m in MUTANTS}]
    if unknown:
        print(f"unknown mutants {unknown}; --list shows them", file=sys.stderr)
        return 2
    chosen = [m for m in MUTANTS if (not a.only or m.name in a.only) and (m.fast or not a.fast)]
    rows = []
    for m in chosen:
        r = run_mutant(m)
        rows.append(r)
        word = {"caught": "caught  ", "survived": "SURVIVED", "error": "ERROR   "}[r["outcome"]]
        print(f"{word} {m.name:28s} {r['seconds']:6.1f} s  {r['detail']}", flush=True)
    if a.markdown:
        print("\n| planted fault | tests | caught | s |\n|---|---|---|---:|")
        for r in rows:
            cell = {"caught": "yes", "survived": "**no**", "error": "**error**"}[r["outcome"]]
            print(f"| {r['what']} (`{r['name']}`) | `{r['tests']}` | {cell} | {r['seconds']} |")
    survived = [r["name"] for r in rows if r["outcome"] == "survived"]
    errors = [r["name"] for r in rows if r["outcome"] == "error"]
    print(f"{sum(r['caught'] for r in rows)} of {len(rows)} planted faults caught" +
          (f"; survived: {', '.join(survived)}" if survived else "") +
          (f"; ERROR (not a catch): {', '.join(errors)}" if errors else ""))
    return 1 if survived or errors else 0


if __name__ == "__main__":
    sys.exit(main())
