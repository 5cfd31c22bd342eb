"""What every node shares. Parameters in one place: each node's frozen dataclass names its
parameters and defaults; :func:`declare` declares them with descriptors (type from the default,
description, range) and reads them back into the dataclass, whose ``__post_init__`` validates.
:func:`main` is every executable's entry point.
"""
from __future__ import annotations

import sys
from dataclasses import fields
from typing import Any, Callable

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


def main(name: str, make: Callable, run: Callable | None = None, args: list[str] | None = None) -> int:
    """Init, build the node with ``make()``, then ``run(node)`` (default: spin) until Ctrl-C or
    shutdown. Invalid parameters or a bad model bundle: the message on stderr, exit code 2."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from despite_core.runtime.inference import BundleError

    rclpy.init(args=args)
    node = None
    try:
        node = make()
        (run or rclpy.spin)(node)
    except (ValueError, BundleError, rclpy.exceptions.ParameterException) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        # Ctrl-C / SIGINT: rclpy's handler either raises KeyboardInterrupt in spin or shuts the context
        # down first, and spin then raises ExternalShutdownException (which ended a node with exit code 1).
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


class SinceLast:
    """Counters' increase since the previous diagnostics: a node's level follows what happened in the
    last period (one bad message warns once, then the node is OK again), the values stay totals."""

    def __init__(self) -> None:
        self.prev: dict[str, int] = {}

    def __call__(self, totals: dict[str, int]) -> dict[str, int]:
        delta = {k: int(v) - self.prev.get(k, 0) for k, v in totals.items()}
        self.prev = {k: int(v) for k, v in totals.items()}
        return delta
