"""The planted-fault table (bench/mutants.py) stays true: every mutant's edit site still exists
exactly once in the installed code and every mutant's test ids still collect tests (a refactor or
a renamed test cannot silently retire a mutant), and the quick mutants are run here, each of which
must make its tests fail: pytest exit status 1, nothing else (a collection error, an unknown test
id, no tests collected or a timeout is an error of the mutant run, not a catch). The whole table
(training mutants included, a few minutes): `.venv/bin/python bench/mutants.py`."""
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


def test_every_mutant_test_id_collects():
    m = load()
    assert m.check_tests() == []


def test_only_failed_tests_count_as_a_catch():
    m = load()
    assert m.outcome(1, True) == "caught" and m.outcome(0, True) == "survived"
    for rc in (2, 3, 4, 5, None):                  # collection error, internal, id not found, none collected, timeout
        assert m.outcome(rc, True) == "error", rc
    assert m.outcome(1, False) == "error"          # failed, but without the mutant imported


def test_a_renamed_test_is_an_error_not_a_catch(monkeypatch):
    m = load()
    # a harmless edit (old == new) in a light module, and a test id that does not exist: pytest exits 4
    gone = m.Mutant("renamed", "a mutant whose test id no longer exists", "despite_core.data.sampling",
                    "    return _fps(pts, k, start)\n", "    return _fps(pts, k, start)\n",
                    ("test/test_mutants.py::test_no_such_test",))
    r = m.run_mutant(gone, timeout=120)
    assert r["outcome"] == "error" and not r["caught"] and r["exit"] == 4, r
    monkeypatch.setattr(m, "MUTANTS", (gone,))
    assert m.check_tests() == ["renamed: its test test/test_mutants.py::test_no_such_test collects no test"]


def test_quick_mutants_are_caught():
    m = load()
    fast = [x for x in m.MUTANTS if x.fast]
    assert len(fast) >= 8
    results = [m.run_mutant(x, timeout=300) for x in fast]
    assert all(r["overlay_used"] for r in results), results
    errors = [(r["name"], r["exit"], r["detail"]) for r in results if r["outcome"] == "error"]
    assert not errors, errors
    survived = [(r["name"], r["detail"]) for r in results if r["outcome"] != "caught"]
    assert not survived, survived
