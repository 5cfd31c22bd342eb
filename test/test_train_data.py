"""Training windows: the model grid, resampling of a 20 Hz source, the disk cache, augmentation."""
import numpy as np
import torch

from despite_core.data.imu_layout import ImuLayout
from despite_core.data.rotations import rot_z
from despite_core.data.sampling import normalise_frame
from despite_core.data.store import SMPL_JOINT_NAMES, Sequence, Store, StoreWriter
from despite_core.train.data import Augment, WindowDataset, collate

LAYOUT15 = ImuLayout(channels=("rotmat", "acc", "gyro"))


def make_store(path, fps=20.0, t=80):
    ts = np.arange(t) / fps
    rot = rot_z(ts).reshape(t, 1, 9).repeat(4, 1)
    acc = np.stack([ts, 0 * ts, 9.81 + 0 * ts], -1)[:, None].repeat(4, 1)
    gyro = np.zeros((t, 4, 3))
    rng = np.random.default_rng(0)
    seq = Sequence("s", "subj", fps, ts, np.array([0] * (t // 2) + [1] * (t - t // 2)),
                   text=np.array(["walk"] * (t // 2) + [""] * (t - t // 2)),
                   points=[rng.normal(size=(40, 3)).astype(np.float32) + [i, 0, 0] for i in range(t)],
                   imu=np.concatenate([rot, acc, gyro], -1).astype(np.float32),
                   joints=np.broadcast_to(ts[:, None, None], (t, 24, 3)).astype(np.float32))
    with StoreWriter(path, ["walk", "wave"], imu_layout=LAYOUT15, joint_names=SMPL_JOINT_NAMES) as w:
        w.add(seq)
    return Store(path)


def test_grid_resamples_a_20hz_source_and_caches(tmp_path):
    store = make_store(tmp_path / "st")
    ds = WindowDataset(store, ["s"], ("pointcloud", "imu", "skeleton"), stride=2, cache_dir=tmp_path / "cache")
    g = ds.sequences[0]
    assert len(g.labels) == 40                                    # 4 s at 10 fps
    assert g.imu.shape == (40, 48)                                # 4 sites x (rotmat 9 + acc 3), gyro dropped
    assert np.allclose(g.joints[:, 0, 0], np.arange(40) / 10, atol=1e-6)
    assert np.allclose(g.imu[:, :9].reshape(40, 3, 3), rot_z(np.arange(40) / 10), atol=1e-5)
    assert np.allclose(g.points[3], normalise_frame(store.read("s").points[6]))
    assert len(list((tmp_path / "cache").glob("points256-*.npy"))) == 1
    item = ds[1]
    assert item["pointcloud"].shape == (24, 256, 3) and item["imu"].shape == (24, 48)
    assert torch.allclose(item["skeleton"][0, 0], torch.zeros(3))  # centred on the window's first pelvis
    assert item["label"] == window_majority(ds, 1) and item["text_mask"] is True
    batch = collate([ds[0], ds[1]])
    assert batch["pointcloud"].shape == (2, 24, 256, 3) and batch["label"].tolist() == [0, 0]


def window_majority(ds, i):
    k, s = ds.windows[i]
    v, c = np.unique(ds.sequences[k].labels[s:s + 24], return_counts=True)
    return int(v[np.argmax(c)])


def test_augmentation_is_deterministic_per_epoch_and_index(tmp_path):
    store = make_store(tmp_path / "st")
    ds = WindowDataset(store, ["s"], ("pointcloud", "imu"), augment=Augment(), seed=3)
    a, b = ds[0], ds[0]
    assert torch.equal(a["pointcloud"], b["pointcloud"]) and torch.equal(a["imu"], b["imu"])
    plain = WindowDataset(store, ["s"], ("pointcloud",))[0]["pointcloud"]
    assert not torch.allclose(a["pointcloud"], plain)
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["pointcloud"], a["pointcloud"])


def test_other_imu_layouts_train_without_code_changes(tmp_path):
    """One phone with acc + gyro: the model's IMU input follows the store's declared layout."""
    from despite_core.train import checkpoint as ckpt
    from despite_core.train.pretrain import main as pretrain_main

    phone = ImuLayout(sites=("phone",), channels=("acc", "gyro"))
    t = 60
    rng = np.random.default_rng(1)
    with StoreWriter(tmp_path / "st", ["walk", "wave"], imu_layout=phone) as w:
        for k in range(3):
            w.add(Sequence(f"s{k}", f"subj{k}", 10.0, np.arange(t) / 10.0, np.zeros(t, np.int64),
                           points=[rng.normal(size=(30, 3)).astype(np.float32) for _ in range(t)],
                           imu=rng.normal(size=(t, 1, 6)).astype(np.float32)))
        w.add_split("by_subject", {"train": ["s0", "s1"], "val": [], "test": ["s2"]})
    assert pretrain_main(["--store", str(tmp_path / "st"), "--out", str(tmp_path / "run"), "--preset", "DePIE",
                          "--epochs", "1", "--batch-size", "8", "--stride", "4", "--small", "--quiet", "--val-split", ""]) == 0
    state = ckpt.load(tmp_path / "run" / "last.pt")
    assert ckpt.imu_layout_of(state) == phone
    assert state["model"]["encoders.imu.lstm.weight_ih_l0"].shape[1] == 6
