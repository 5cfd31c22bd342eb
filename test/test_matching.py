"""The README's matching and open-vocabulary promises on hand-made embeddings: match probabilities
are a softmax over tracks at the bundle's temperature, the Hungarian assignment follows the
similarities and drops pairs under ``min_similarity``, a wearer whose IMU is older than
``max_stale`` is not matched (and says why), and zero-shot labels sum the phrases of each label."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from despite_core.runtime.inference import default_bundle_path, load_bundle
from despite_core.runtime.pipeline import WearerMatcher, assign

NS = 10**9


def unit(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class FakeRuntime:
    """A runtime whose IMU encoder returns chosen embeddings (one per wearer, in order)."""

    def __init__(self, imu_embeddings: np.ndarray, temperature: float = 0.1):
        real = load_bundle(default_bundle_path())
        self.bundle = SimpleNamespace(meta={**real.meta, "temperature": temperature}, imu_layout=real.imu_layout,
                                      root=real.root, class_names=real.class_names)
        self.imu = np.asarray(imu_embeddings, np.float32)
        self.calls = 0

    def has(self, part: str) -> bool:
        return part == "imu_encoder"

    def encode(self, modality: str, x: np.ndarray):
        assert modality == "imu" and x.ndim == 3
        self.calls += 1
        return np.zeros((len(x), 4), np.float32), self.imu[: len(x)]


def feed(matcher: WearerMatcher, wearer: str, t0: float, t1: float, rate: float = 100.0) -> None:
    for site in matcher.layout.sites:
        for t in np.arange(t0, t1, 1 / rate):
            q = (1.0, 0.0, 0.0, 0.0)
            values = np.array([*q, 0.0, 0.0, 0.0, 0.0, 0.0, 9.81])
            assert matcher.wearers[wearer].push(site, int(round(t * NS)), values) in ("ok",)


def window_stamps(t_end: float, n: int = 24, fps: float = 10.0) -> np.ndarray:
    return np.array([int(round((t_end - (n - 1 - k) / fps) * NS)) for k in range(n)], np.int64)


def test_probabilities_assignment_and_gate():
    imu = unit([[1, 0, 0, 0], [0, 1, 0, 0]])                      # alice ~ track 7, bob ~ track 3
    tracks = unit([[0.1, 0.9, 0.2, 0], [0.95, 0.2, 0, 0.1], [0, 0, 0, 1]])   # ids 3, 7, 9
    rt = FakeRuntime(imu, temperature=0.1)
    m = WearerMatcher(rt, ["alice", "bob"], min_similarity=0.1)
    for w in ("alice", "bob"):
        feed(m, w, 0.0, 3.0)
    res = m.match(window_stamps(2.95), [3, 7, 9], tracks)
    sim = imu @ tracks.T
    assert np.allclose(res.similarity, sim, atol=1e-6)
    expect = np.exp(sim / 0.1) / np.exp(sim / 0.1).sum(1, keepdims=True)        # softmax over tracks at T
    assert np.allclose(res.probability, expect, atol=1e-5)
    assert res.assigned == {"alice": 7, "bob": 3}
    # at another temperature the probabilities change accordingly (the bundle's value is used)
    rt2 = FakeRuntime(imu, temperature=0.5)
    m2 = WearerMatcher(rt2, ["alice", "bob"])
    for w in ("alice", "bob"):
        feed(m2, w, 0.0, 3.0)
    p2 = m2.match(window_stamps(2.95), [3, 7, 9], tracks).probability
    assert np.allclose(p2, np.exp(sim / 0.5) / np.exp(sim / 0.5).sum(1, keepdims=True), atol=1e-5)
    assert p2.max() < res.probability.max()
    # the gate: a wearer whose best track is under min_similarity stays unassigned
    strict = WearerMatcher(FakeRuntime(imu), ["alice", "bob"], min_similarity=0.99)
    for w in ("alice", "bob"):
        feed(strict, w, 0.0, 3.0)
    assert strict.match(window_stamps(2.95), [3, 7, 9], tracks).assigned == {}


def test_assignment_is_the_best_total_not_greedy():
    # greedy would give wearer 0 track 0 (0.9) and wearer 1 track 1 (0.1): total 1.0; best is 0.8 + 0.85
    sim = np.array([[0.9, 0.8], [0.85, 0.1]], np.float32)
    assert sorted(assign(sim, 0.0)) == [(0, 1), (1, 0)]
    assert assign(sim, 0.82) == [(1, 0)]                        # (0, 1) at 0.8 falls under the gate


def test_stale_imu_is_not_matched():
    imu = unit([[1, 0, 0, 0], [0, 1, 0, 0]])
    m = WearerMatcher(FakeRuntime(imu), ["alice", "bob"], max_stale=0.15)
    feed(m, "alice", 0.0, 3.0)
    feed(m, "bob", 0.0, 2.7)                                    # bob's newest sample is 0.25 s old at 2.95 s
    res = m.match(window_stamps(2.95), [1, 2], unit([[1, 0, 0, 0], [0, 1, 0, 0]]))
    assert res.wearer_ids == ["alice"] and "bob" in res.missing and "older than the scan" in res.missing["bob"]
    assert res.assigned == {"alice": 1}


def test_zero_shot_sums_phrases_per_label(tmp_path):
    """Three phrases, two labels: the probability of a label is the sum over its phrases of the
    softmax over all phrases at the bundle's temperature."""
    from despite_core.runtime.inference import Runtime, phrase_labels

    rt = Runtime(default_bundle_path(), providers="cpu")
    d = int(rt.bundle.meta["embedding_dim"])
    phrases = unit(np.eye(3, d))                                # orthogonal phrase embeddings
    vocab, member = phrase_labels(["walk", "walk", "wave"])     # what the runtime builds from model.yaml
    assert vocab == ["walk", "wave"]
    rt._text = (vocab, member, phrases)
    x = unit(np.array([[0.0, 0.0, 1.0] + [0.0] * (d - 3), [1.0, 0.2, 0.0] + [0.0] * (d - 3)]))
    got_vocab, probs = rt.zero_shot(x)
    t = float(rt.bundle.meta["temperature"])
    per = np.exp(x @ phrases.T / t)
    per /= per.sum(1, keepdims=True)
    assert got_vocab == vocab
    assert np.allclose(probs, np.stack([per[:, 0] + per[:, 1], per[:, 2]], 1), atol=1e-5)
    assert probs[0].argmax() == 1 and probs[1].argmax() == 0    # nearest phrase's label wins


def test_provider_choice_with_faked_onnxruntime_builds():
    """Which execution providers each `providers` setting takes, for CPU-only, CUDA and TensorRT
    builds of onnxruntime (faked lists; this machine has the CPU build, checked last)."""
    import onnxruntime as ort
    import pytest

    from despite_core.runtime.inference import Runtime, choose_providers

    cpu, cuda, trt = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
    assert choose_providers("auto", [cpu]) == [cpu]
    assert choose_providers("auto", [cuda, cpu]) == [cuda, cpu]
    assert choose_providers("auto", [trt, cuda, cpu]) == [trt, cuda, cpu]
    assert choose_providers("cpu", [trt, cuda, cpu]) == [cpu]
    assert choose_providers("cuda", [trt, cuda, cpu]) == [cuda, cpu]
    assert choose_providers("tensorrt", [trt, cuda, cpu]) == [trt, cuda, cpu]
    with pytest.raises(RuntimeError, match="install onnxruntime-gpu"):
        choose_providers("cuda", [cpu])
    with pytest.raises(RuntimeError, match="TensorrtExecutionProvider"):
        choose_providers("tensorrt", [cuda, cpu])              # no silent fallback to CUDA
    with pytest.raises(ValueError, match="providers must be one of"):
        choose_providers("gpu", [cpu])
    # the real runtime here: the CPU build
    assert ort.get_available_providers()[-1] == cpu
    assert Runtime(default_bundle_path(), providers="auto").provider == choose_providers(
        "auto", ort.get_available_providers())[0]
