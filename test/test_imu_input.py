"""IMU input options of the recipe: per-channel standardisation inside the encoder, and the gyroscope."""
import numpy as np
import pytest
import torch

from despite_core.data.store import Store
from despite_core.models.imu import ImuEncoder, ImuEncoderConfig
from despite_core.train import checkpoint as ckpt
from despite_core.train.data import WindowDataset, imu_input_stats, model_imu_layout, split_ids
from despite_core.train.pretrain import main as pretrain_main


def test_a_normalised_encoder_is_the_plain_one_on_standardised_input():
    torch.manual_seed(0)
    cfg = ImuEncoderConfig(input_dim=6, hidden=16, embed_dim=8)
    plain = ImuEncoder(cfg)
    normed = ImuEncoder(ImuEncoderConfig(input_dim=6, hidden=16, embed_dim=8, input_norm=True))
    normed.load_state_dict({**plain.state_dict(), "input_mean": torch.zeros(6), "input_std": torch.ones(6)})
    mean, std = torch.tensor([9.8, 0, 0, 1, 2, 3.0]), torch.tensor([2.0, 0.5, 0.5, 1, 1e-6, 4])
    normed.set_input_stats(mean, std)
    x = torch.randn(3, 24, 6) * 3 + 5
    safe = torch.where(std < 1e-3, torch.ones_like(std), std)        # a constant channel is centred, not amplified
    for a, b in zip(normed(x), plain((x - mean) / safe)):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.equal(normed.state_dict()["input_mean"], mean)   # saved with the weights
    with pytest.raises(ValueError, match="6 channels"):
        normed.set_input_stats(torch.zeros(5), torch.ones(5))
    with pytest.raises(ValueError, match="finite"):
        normed.set_input_stats(torch.full((6,), float("nan")), torch.ones(6))
    with pytest.raises(ValueError, match="without input_norm"):
        plain.set_input_stats(mean, std)


def test_gyro_layout_adds_the_angular_rate_of_each_site(tiny_store):
    layout = Store(tiny_store).imu_layout
    assert model_imu_layout(layout).flat_width == 48
    with_gyro = model_imu_layout(layout, gyro=True)
    assert with_gyro.channels == ("rotmat", "acc", "gyro") and with_gyro.flat_width == 60


def test_pretraining_with_normalised_gyro_input_saves_exports_and_recovers_the_statistics(tiny_store, tmp_path):
    from despite_core.cli import main
    from despite_core.runtime.inference import Runtime
    from despite_core.train.from_bundle import recover_encoder

    run = tmp_path / "pre"
    assert pretrain_main(["--store", str(tiny_store), "--out", str(run), "--batch-size", "8", "--stride", "6",
                          "--max-windows", "16", "--small", "--quiet", "--preset", "DePIE", "--epochs", "1",
                          "--imu-norm", "--imu-gyro"]) == 0
    state = ckpt.load(run / "last.pt", expect_kind="pretrain")
    store = Store(tiny_store)
    layout = model_imu_layout(store.imu_layout, gyro=True)
    ds = WindowDataset(store, split_ids(store, "by_subject", "train"), ("imu",), stride=6, imu_layout=layout)
    mean, std = imu_input_stats(ds)
    assert mean.shape == (60,) and std.min() >= 0
    saved_mean = state["model"]["encoders.imu.input_mean"].numpy()
    # what training set: the training split's per-channel statistics (Adam never touches a buffer)
    assert np.allclose(saved_mean, mean, atol=1e-5)
    assert ckpt.imu_layout_of(state).flat_width == 60
    bundle = tmp_path / "bundle"
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--store", str(tiny_store), "--out", str(bundle)]) == 0
    rt = Runtime(bundle, providers="cpu")
    x = np.random.default_rng(0).normal(size=(2, 24, 60)).astype(np.float32) * 3
    from despite_core.models.despite import DeSPITEConfig, DeSPITEModel
    model = DeSPITEModel(DeSPITEConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"], strict=False)
    model.eval()
    with torch.no_grad():
        feats, emb = model.encoders["imu"](torch.from_numpy(x))
    ofeats, oemb = rt.encode("imu", x)
    assert np.abs(ofeats - feats.numpy()).max() < 1e-4 and np.abs(oemb - emb.numpy()).max() < 1e-4
    rec = recover_encoder(bundle, "imu")
    assert torch.equal(rec.state["input_mean"], state["model"]["encoders.imu.input_mean"])
    assert torch.equal(rec.state["input_std"], state["model"]["encoders.imu.input_std"])
