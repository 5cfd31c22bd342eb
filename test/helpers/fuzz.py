"""The one size knob of every hypothesis fuzzer in test/: ``DESPITE_FUZZ_EXAMPLES``.

Unset, each fuzzer runs its own fixed number of examples, derandomized (the same examples on
every run: `make test` is reproducible). Set, every fuzzer runs that many examples per test
(whole-import fuzzers a ``share`` of it), randomised: the long campaign of the README's Reliability
section, e.g. ``DESPITE_FUZZ_EXAMPLES=5000 .venv/bin/pytest test/test_fuzz.py test/test_hostile_inputs.py
test/test_fuzz_importers.py``. test_fuzz.py checks that every fuzzer's settings come from here."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

ENV = "DESPITE_FUZZ_EXAMPLES"


def campaign() -> int:
    """Examples per test that ``DESPITE_FUZZ_EXAMPLES`` asks for; 0 when unset or empty."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return 0
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{ENV}={value!r}: expected a whole number of examples per test") from None
    if n < 1:
        raise ValueError(f"{ENV}={value!r}: expected at least 1 example per test")
    return n


def fuzz_settings(examples: int, *, share: float = 1.0, **kwargs) -> settings:
    """hypothesis settings: ``examples`` per test in the default run (derandomized, no example
    database), or ``share`` of ``DESPITE_FUZZ_EXAMPLES`` (at least 1; randomised, failures kept in
    hypothesis' database) when it is set. No deadline: the machine's speed is not under test.
    ``kwargs``: further hypothesis settings (health checks to suppress, ...)."""
    n = campaign()
    options = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow], **kwargs}
    if n:
        options.update(max_examples=max(int(n * share), 1), derandomize=False)
    else:
        options.update(max_examples=examples, derandomize=True, database=None)
    return settings(**options)
