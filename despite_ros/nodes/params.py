"""Parameters of the nodes in one place: each node's frozen dataclass names its parameters and
defaults; :func:`declare` declares them on the node with descriptors (type from the default,
description, range) and reads them back into the dataclass, whose ``__post_init__`` validates.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


def declare(node, cls, docs: dict[str, tuple]) -> Any:
    """``docs``: name -> (description,) or (description, low, high). Every field must be documented."""
    undocumented = [f.name for f in fields(cls) if f.name not in docs]
    if undocumented:
        raise RuntimeError(f"{cls.__name__}: parameters without a description: {undocumented}")
    values = {}
    defaults = cls()
    for f in fields(cls):
        default = getattr(defaults, f.name)
        text, *bounds = docs[f.name]
        extra = {}
        if bounds:
            lo, hi = bounds
            if isinstance(default, bool):
                pass
            elif isinstance(default, int):
                extra = {"integer_range": [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]}
            else:
                extra = {"floating_point_range": [FloatingPointRange(from_value=float(lo), to_value=float(hi))]}
        desc = ParameterDescriptor(description=text, read_only=True, **extra)
        values[f.name] = node.declare_parameter(f.name, list(default) if isinstance(default, tuple) else default, desc).value
        if isinstance(default, tuple):
            values[f.name] = tuple(values[f.name])
    return cls(**values)
