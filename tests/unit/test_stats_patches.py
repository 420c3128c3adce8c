"""parity.stats.patches: per-patch statistics and per-patch errors on hand-made patches."""
import math

import numpy as np
import pytest

from parity.stats.patches import patch_errors, patch_stats


def _checker(h=4, w=4):
    return np.where((np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 == 0, 1.0, -1.0)


def test_patch_stats_hand_made():
    x = np.empty((2, 2, 4, 4))
    centres = np.array([[0.0, 1.0], [2.0, -3.0]])
    scales = np.array([[1.0, 2.0], [0.5, 0.0]])
    for b in range(2):
        for p in range(2):
            x[b, p] = centres[b, p] + scales[b, p] * _checker()
    s = patch_stats(x)
    pp = s["per_patch"]
    np.testing.assert_allclose(pp["mean"], centres, atol=1e-15)
    np.testing.assert_allclose(pp["std"], scales, atol=1e-15)
    np.testing.assert_allclose(pp["var_zero_mean"], scales ** 2, atol=1e-15)
    np.testing.assert_allclose(pp["min"], centres - scales)
    np.testing.assert_allclose(pp["max"], centres + scales)
    assert pp["mean"].shape == (2, 2)
    assert s["global_mean"] == pytest.approx(0.0)
    assert s["var_zero_mean"] == pytest.approx((1 + 4 + 0.25 + 0) / 4)
    assert s["global_std"] == pytest.approx(np.std(x, ddof=1))       # unbiased, like torch.std
    assert s["global_std"] != pytest.approx(np.std(x, ddof=0))
    assert s["shape"] == [2, 2, 16]


def test_patch_stats_complex_on_amplitude_and_phase():
    amp = 2.0 + _checker()                            # values 1 and 3: mean 2, std 1
    phase = 0.5 * _checker()                          # values +-0.5: mean 0, std 0.5
    x = np.broadcast_to(amp * np.exp(1j * phase), (2, 2, 4, 4)).astype(np.complex64)
    s = patch_stats(x)
    assert set(s) == {"amplitude", "phase", "shape"}
    np.testing.assert_allclose(s["amplitude"]["per_patch"]["mean"], 2.0, rtol=1e-6)
    np.testing.assert_allclose(s["amplitude"]["per_patch"]["std"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(s["phase"]["per_patch"]["mean"], 0.0, atol=1e-7)
    np.testing.assert_allclose(s["phase"]["per_patch"]["std"], 0.5, rtol=1e-6)
    np.testing.assert_allclose(s["phase"]["per_patch"]["max"], 0.5, rtol=1e-6)
    assert s["amplitude"]["global_std"] == pytest.approx(np.std(np.abs(x.astype(complex)), ddof=1))


def test_patch_stats_needs_four_axes():
    with pytest.raises(ValueError, match=r"\(B, C, N, N\).*\(3, 4, 4\)"):
        patch_stats(np.zeros((3, 4, 4)))


def test_patch_errors_known_values_and_worst_order():
    ref = np.ones((2, 3, 2, 2))
    cand = ref.copy()
    cand[1, 2, 0, 0] += 0.5
    cand[0, 1, 1, 1] += 0.25
    cand[0, 0] = 0.0
    e = patch_errors(ref, cand, top_k=3)
    assert e["max_abs"].shape == (2, 3)
    assert e["max_abs"][1, 2] == 0.5 and e["max_abs"][0, 1] == 0.25 and e["max_abs"][0, 0] == 1.0
    assert e["rel_l2"][0, 0] == pytest.approx(1.0)
    assert e["rel_l2"][1, 2] == pytest.approx(0.5 / 2.0)
    assert [(b, c) for b, c, _ in e["worst"]] == [(0, 0), (1, 2), (0, 1)]
    assert e["worst"][1][2] == 0.5


def test_patch_errors_zero_reference_and_nan():
    ref = np.zeros((1, 2, 2, 2))
    cand = ref.copy()
    cand[0, 1, 0, 0] = 1e-3
    e = patch_errors(ref, cand)
    assert e["rel_l2"][0, 0] == 0.0 and e["rel_l2"][0, 1] == math.inf
    cand[0, 0, 1, 1] = np.nan
    e = patch_errors(ref, cand)
    assert e["worst"][0][:2] == (0, 0) and e["max_abs"][0, 0] == math.inf
