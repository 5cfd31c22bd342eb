"""The one ONNX export call (legacy TorchScript exporter, dynamic batch axis) that `despite export`
and the weight recovery of despite_core.train.from_bundle both use: recovery re-exports a tagged
model exactly as the bundle's part was exported."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn

EXPORT_BATCH = 2          # batch of the example inputs traced at export


def export_onnx(module: nn.Module, example, path: Path, input_name, outputs: list[str], opset: int) -> None:
    """Export with a dynamic batch axis; ``example``/``input_name`` may be tuples for several inputs."""
    examples = example if isinstance(example, tuple) else (example,)
    names = list(input_name) if isinstance(input_name, (tuple, list)) else [input_name]
    axes = {**{n: {0: "batch"} for n in names}, **{o: {0: "batch"} for o in outputs}}
    # Shape arithmetic on traced sizes warns; the parity check at another batch size is the real test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(module.eval(), examples, str(path), input_names=names, output_names=outputs,
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
