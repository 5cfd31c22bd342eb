"""The synthetic-world edition whose classes are the shipped default bundle's: stores that a test
fine-tunes the default model on (or compares it with) are drawn from that edition, so that the
bundle's own head applies."""
from __future__ import annotations


def default_edition() -> int:
    from despite_core.data.synth.motion import EDITIONS, class_names
    from despite_core.runtime.inference import default_bundle_path, load_bundle

    names = load_bundle(default_bundle_path()).class_names
    for e in EDITIONS:
        if list(class_names(e)) == names:
            return e
    raise AssertionError(f"the default bundle's classes {names} are no world edition's")
