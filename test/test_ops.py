"""Pure-torch point ops against brute-force references (PointNet++ semantics), and ONNX export."""
import numpy as np
import pytest
import torch

from despite_core.data.sampling import farthest_point_indices
from despite_core.ops import ball_query, farthest_point_sample, gather_points


def brute_ball_query(radius, nsample, xyz, centres):
    out = np.zeros(centres.shape[:2] + (nsample,), dtype=np.int64)
    for b in range(xyz.shape[0]):
        for m in range(centres.shape[1]):
            hits = [i for i in range(xyz.shape[1]) if np.sum((xyz[b, i] - centres[b, m]) ** 2) < radius**2]
            hits = hits[:nsample]
            fill = hits[0] if hits else 0
            out[b, m] = hits + [fill] * (nsample - len(hits))
    return out


def test_fps_matches_numpy_reference():
    g = torch.Generator().manual_seed(0)
    xyz = torch.randn(3, 200, 3, generator=g)
    idx = farthest_point_sample(xyz, 16)
    for b in range(3):
        assert idx[b].tolist() == farthest_point_indices(xyz[b].numpy(), 16).tolist()


@pytest.mark.parametrize("radius", [0.05, 0.3, 10.0])
def test_ball_query_matches_brute_force(radius):
    g = torch.Generator().manual_seed(1)
    xyz = torch.rand(2, 64, 3, generator=g)
    centres = torch.rand(2, 5, 3, generator=g)
    got = ball_query(radius, 8, xyz, centres)
    assert got.tolist() == brute_ball_query(radius, 8, xyz.numpy(), centres.numpy()).tolist()


def test_ball_query_more_samples_than_points_and_gather():
    xyz = torch.tensor([[[0.0, 0, 0], [0.1, 0, 0], [5.0, 0, 0]]])
    idx = ball_query(0.5, 6, xyz, torch.zeros(1, 1, 3))
    assert idx.tolist() == [[[0, 1, 0, 0, 0, 0]]]
    got = gather_points(xyz, idx)
    assert got.shape == (1, 1, 6, 3) and torch.equal(got[0, 0, 1], xyz[0, 1])


def test_ops_export_to_onnx_with_dynamic_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")

    class M(torch.nn.Module):
        def forward(self, xyz):
            idx = farthest_point_sample(xyz, 8)
            centres = gather_points(xyz, idx)
            nb = ball_query(0.3, 16, xyz, centres)
            return gather_points(xyz, nb)

    xyz = torch.rand(2, 128, 3)
    path = tmp_path / "ops.onnx"
    torch.onnx.export(M(), (xyz,), str(path), input_names=["xyz"], output_names=["grouped"],
                      dynamic_axes={"xyz": {0: "batch"}}, opset_version=17, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    other = torch.rand(5, 128, 3)  # a batch size other than the export batch
    got = sess.run(None, {"xyz": other.numpy()})[0]
    assert np.allclose(got, M()(other).numpy(), atol=1e-6)
