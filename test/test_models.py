"""Encoders (shapes, the tube embedding against a brute-force loop, ONNX export with a dynamic
batch) and the modality-keyed model."""
import numpy as np
import pytest
import torch

from despite_core.models.despite import DeSPITEConfig, DeSPITEModel
from despite_core.models.imu import ImuEncoder, ImuEncoderConfig
from despite_core.models.pst import PSTConfig, PSTTransformer
from despite_core.models.skeleton import SkeletonEncoder
from despite_core.data.imu_layout import ImuLayout
from despite_core.presets import PRESETS, loss_pairs, preset_modalities

torch.manual_seed(0)


def clouds(b=2, t=24, n=256, scale=0.3):
    return torch.randn(b, t, n, 3) * scale


def brute_tube(model, xyz):
    """P4DConv by explicit loops over windows, frames, anchors and points (numpy semantics)."""
    c = model.config
    x = xyz.numpy()
    b, t = x.shape[:2]
    w = model.tube.conv_d.weight.detach().numpy()                           # (dim, 4)
    padded = [0] * c.temporal_padding[0] + list(range(t)) + [t - 1] * c.temporal_padding[1]
    half = c.temporal_kernel // 2
    from despite_core.data.sampling import farthest_point_indices

    anchors_out, feats_out = [], []
    for bi in range(b):
        a_list, f_list = [], []
        for mid in range(half, len(padded) - half, c.temporal_stride):
            frame = x[bi, padded[mid]]
            anchors = frame[farthest_point_indices(frame, c.anchors)]
            per_offset = []
            for d in range(-half, half + 1):
                nb = x[bi, padded[mid + d]]
                f = np.zeros((c.anchors, c.dim))
                for ai, a in enumerate(anchors):
                    hits = [j for j in range(len(nb)) if np.sum((nb[j] - a) ** 2) < c.radius ** 2][: c.nsamples]
                    if not hits:
                        hits = [0]
                    disp = np.concatenate([nb[hits] - a, np.full((len(hits), 1), float(d))], 1)   # (k, 4)
                    f[ai] = (disp @ w.T).max(0)
                per_offset.append(f)
            a_list.append(anchors)
            f_list.append(np.max(per_offset, axis=0))
        anchors_out.append(a_list)
        feats_out.append(f_list)
    return np.array(anchors_out), np.array(feats_out)


def test_tube_embedding_matches_brute_force():
    cfg = PSTConfig(frames=6, points=64, spatial_stride=16, nsamples=8)
    model = PSTTransformer(cfg)
    xyz = clouds(2, 6, 64)
    anchors, feats = model.tube(xyz)
    want_a, want_f = brute_tube(model, xyz)
    assert anchors.shape == (2, cfg.windows, cfg.anchors, 3) == want_a.shape
    assert np.allclose(anchors.numpy(), want_a, atol=1e-6)
    assert np.allclose(feats.detach().numpy(), want_f, atol=1e-5)


def test_pst_reference_shapes_and_tokens():
    model = PSTTransformer()
    c = model.config
    assert (c.anchors, c.windows) == (8, 12)       # 96 tokens, as the reference configuration
    f, e = model(clouds())
    assert f.shape == (2, 80) and e.shape == (2, 512)
    assert torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError, match=r"must be \(B, 24, 256, 3\)"):
        model(torch.zeros(2, 24, 100, 3))


def test_imu_and_skeleton_encoders():
    layout = ImuLayout()  # LIPD's four sites x (rotmat 9 + acc 3)
    imu = ImuEncoder(ImuEncoderConfig.for_layout(layout))
    f, e = imu(torch.randn(3, 24, 4, 12))
    assert f.shape == (3, 512) and e.shape == (3, 512)
    six = ImuEncoder(ImuEncoderConfig.for_layout(ImuLayout(sites=tuple(f"s{i}" for i in range(6)), channels=("quat", "acc", "gyro"))))
    assert six(torch.randn(2, 24, 60))[1].shape == (2, 512)
    with pytest.raises(ValueError, match="expects 48"):
        imu(torch.randn(2, 24, 50))
    skel = SkeletonEncoder()
    f, e = skel(torch.randn(2, 24, 24, 3))
    assert f.shape == (2, 512) and torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    # Each transformer layer has its own initialisation (nn.TransformerEncoder deep-copies one).
    w = [l.linear1.weight for l in skel.encoder.layers]
    assert not torch.equal(w[0], w[1])


def test_presets():
    assert len(PRESETS) == 11
    assert preset_modalities("DeSPIE") == ("skeleton", "pointcloud", "imu")
    assert loss_pairs("DePITE") == ["pointcloud-text", "imu-text", "pointcloud-imu"]
    with pytest.raises(ValueError, match="unknown preset 'DeXYZE'"):
        preset_modalities("DeXYZE")


def test_modality_keyed_model_without_text():
    model = DeSPITEModel(DeSPITEConfig(preset="DeSPIE"))
    out = model({"pointcloud": clouds(), "imu": torch.randn(2, 24, 48), "skeleton": torch.randn(2, 24, 24, 3)})
    assert set(out) == {"pointcloud", "imu", "skeleton"} and all(v.shape == (2, 512) for v in out.values())
    cfg = DeSPITEConfig.from_dict(model.config.to_dict())
    assert cfg == model.config


def test_text_encoder_minilm_projection_and_cache():
    model = DeSPITEModel(DeSPITEConfig(preset="DeITE"))
    text = model.encoders["text"]
    f, e = text(["a person walks", "a person waves", "a person walks"])
    assert f.shape == (3, 384) and e.shape == (3, 512)
    assert torch.equal(e[0], e[2])
    assert len(text._cache) == 2
    # Paraphrases are closer than different activities in the frozen space.
    g = text.backbone_features(["a person walks", "someone walks across the room", "a person claps"])
    assert (g[0] @ g[1]) > (g[0] @ g[2])
    # The frozen backbone is not part of the state dict: only the projection trains.
    assert set(text.state_dict()) == {"proj.weight", "proj.bias"}


def test_pst_exports_to_onnx_with_parity_at_another_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = PSTTransformer().eval()
    path = tmp_path / "pst.onnx"
    torch.onnx.export(model, (clouds(2),), str(path), input_names=["points"], output_names=["features", "embedding"],
                      dynamic_axes={"points": {0: "batch"}, "features": {0: "batch"}, "embedding": {0: "batch"}},
                      opset_version=17, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = clouds(5)
    f, e = sess.run(None, {"points": x.numpy()})
    with torch.no_grad():
        tf, te = model(x)
    assert np.abs(e - te.numpy()).max() < 1e-4 and np.abs(f - tf.numpy()).max() < 1e-4


def test_clip_backbone_needs_local_weights(tmp_path):
    from despite_core.models.text import TextEncoder, TextEncoderConfig, load_backbone

    with pytest.raises(ValueError, match="needs clip_weights"):
        load_backbone("clip", None)
    with pytest.raises(FileNotFoundError, match="CLIP weights .* not found"):
        TextEncoder(TextEncoderConfig(backbone="clip", clip_weights=str(tmp_path / "missing.pt")))
    with pytest.raises(ValueError, match="unknown text backbone 'bert'"):
        load_backbone("bert")


def test_streaming_tubes_cached_per_frame_match_the_monolithic_encoder():
    """Tubes computed once per frame (left neighbour = the previous frame) serve every window that
    uses that frame as an anchor; only each window's first tube (replicated left frame) is redone."""
    model = PSTTransformer().eval()
    seq = clouds(1, 30)[0]                                           # (30, 256, 3)
    tube = model.tube

    def frame_tube(f, left):
        a, t = tube.tube([seq[left][None], seq[f][None], seq[min(f + 1, 29)][None]])
        return a[0], t[0]

    cache = {f: frame_tube(f, max(f - 1, 0)) for f in range(29)}     # what a streaming runtime keeps
    with torch.no_grad():
        for s in (0, 1, 5, 6):                                       # windows sliding by one frame
            tubes = [frame_tube(s, s)] + [cache[s + 2 * l] for l in range(1, 12)]
            anchors = torch.stack([a for a, _ in tubes])[None]
            feats = torch.stack([t for _, t in tubes])[None]
            f_stream, e_stream = model.from_tubes(anchors, feats)
            f_full, e_full = model(seq[s:s + 24][None])
            assert torch.allclose(e_stream, e_full, atol=1e-5) and torch.allclose(f_stream, f_full, atol=1e-5)
