"""The planted-fault table (bench/mutants.py) stays true: every mutant's edit site still exists
exactly once in the installed code (a refactor cannot silently retire a mutant), and the quick
mutants are run here, each of which must make its tests fail. The whole table (training mutants
included, a few minutes): `.venv/bin/python bench/mutants.py`."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load():
    spec = importlib.util.spec_from_file_location("mutants", REPO / "bench" / "mutants.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mutants"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_every_mutant_site_exists_once():
    m = load()
    assert m.check_sites() == []
    assert len({x.name for x in m.MUTANTS}) == len(m.MUTANTS) >= 11


def test_quick_mutants_are_caught():
    m = load()
    fast = [x for x in m.MUTANTS if x.fast]
    assert len(fast) >= 8
    results = [m.run_mutant(x, timeout=300) for x in fast]
    assert all(r["overlay_used"] for r in results), results
    survived = [(r["name"], r["detail"]) for r in results if not r["caught"]]
    assert not survived, survived
