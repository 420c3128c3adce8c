"""parity.stats.errors and parity.stats.reductions: hand-computable error statistics, quantiles, ULPs,
and compare_arrays against the separate functions."""
import math

import numpy as np
import pytest

from parity.stats.errors import allowed_mismatches, compare_arrays, error_stats
from parity.stats.patches import patch_errors, patch_stats
from parity.stats.reductions import quantiles, ulps

TOL0 = {"rtol": 0.0, "atol": 0.0, "atol_scaled": 0.0}


def tol(rtol=0.0, atol=0.0, atol_scaled=0.0, frac=0.0):
    return {"rtol": rtol, "atol": atol, "atol_scaled": atol_scaled, "max_mismatch_fraction": frac}


# --------------------------------------------------------------------------- known values
def test_known_values_real():
    ref = np.array([[1.0, 2.0], [3.0, 4.0]])
    cand = ref + np.array([[0.0, 0.1], [0.0, -0.5]])
    s = error_stats(ref, cand, tol(atol=0.2))
    assert s["max_abs"] == pytest.approx(0.5)
    assert s["worst_index"] == (1, 1) and all(type(i) is int for i in s["worst_index"])
    assert s["max_rel"] == pytest.approx(0.125)          # 0.5 / 4 beats 0.1 / 2
    assert s["worst_rel_index"] == (1, 1)
    assert s["rel_max"] == pytest.approx(0.5 / 4)
    assert s["rel_l2"] == pytest.approx(math.sqrt(0.01 + 0.25) / math.sqrt(30))
    assert s["ref_max_abs"] == 4.0
    assert s["mismatch_count"] == 1 and s["mismatch_fraction"] == 0.25
    assert s["margin"] == pytest.approx(2.5)
    assert s["verdict"] == "fail"
    assert s["min_passing_tolerance"] == pytest.approx({"rtol": 0.0, "atol": 0.5, "atol_scaled": 0.0})
    absd = np.abs(cand - ref).ravel()
    assert s["quantiles"]["p50"] == pytest.approx(np.quantile(absd, 0.5))
    assert s["quantiles"]["p99"] == pytest.approx(np.quantile(absd, 0.99))
    assert s["quantiles"]["max"] == pytest.approx(0.5)
    assert s["n_zero_ref"] == 0 and s["n_tiny_ref"] == 0
    assert s["complex_stats"] is None
    assert s["shape"] == (2, 2) and s["n"] == 4


def test_threshold_combines_atol_scaled_and_rtol():
    ref = np.array([10.0, 1.0, 0.0])
    cand = np.array([10.1, 1.05, 0.005])
    # threshold = 0 + 0.001 * max|ref| (= 0.01) + 0.01 * |ref| = [0.11, 0.02, 0.01]
    s = error_stats(ref, cand, tol(rtol=0.01, atol_scaled=0.001))
    assert s["margin"] == pytest.approx(0.05 / 0.02)
    assert s["mismatch_count"] == 1  # ratios 0.909, 2.5, 0.5
    assert s["witness"]["ratio"] == pytest.approx([0.05, 1.0])
    assert s["min_passing_tolerance"] == pytest.approx({"rtol": 0.025, "atol": 0.0, "atol_scaled": 0.0025})
    loose = error_stats(ref, cand, tol(rtol=0.01, atol_scaled=0.001 * 2.5 + 1e-9).copy() | {"rtol": 0.025})
    assert loose["verdict"] == "pass"


def test_pass_at_margin_one_and_exact_match():
    ref = np.array([1.0, 2.0])
    s = error_stats(ref, ref + np.array([0.0, 0.5]), tol(atol=0.5))
    assert s["margin"] == 1.0 and s["verdict"] == "pass" and s["mismatch_count"] == 0
    s = error_stats(ref, ref.copy(), TOL0)
    assert s["verdict"] == "pass" and s["margin"] == 0.0 and s["max_abs"] == 0.0


def test_zero_tolerance_with_difference_suggests_stage_relative_tolerance():
    ref = np.array([0.0, 2.0])
    s = error_stats(ref, np.array([0.0, 2.5]), TOL0)
    assert s["verdict"] == "fail" and s["margin"] == math.inf
    assert s["min_passing_tolerance"] == {"rtol": 0.0, "atol": 0.0, "atol_scaled": 0.25}


def test_shape_mismatch_raises_naming_both_shapes():
    with pytest.raises(ValueError, match=r"reference \(3,\) vs candidate \(1, 3\)"):
        error_stats(np.zeros(3), np.zeros((1, 3)), TOL0)


def test_scalar_and_empty_stages():
    s = error_stats(np.float32(2.0), np.float32(2.5), tol(atol=0.1))
    assert s["worst_index"] == () and s["max_abs"] == 0.5 and s["verdict"] == "fail"
    s = error_stats(np.zeros((0, 3)), np.zeros((0, 3)), TOL0)
    assert s["verdict"] == "pass" and s["n"] == 0 and s["worst_index"] is None


# --------------------------------------------------------------------------- near zero
def test_near_zero_reference_counted_not_inflated():
    ref = np.array([0.0, 1e-9, 1.0, 2.0])
    cand = ref + 1e-7
    s = error_stats(ref, cand, tol(atol_scaled=1e-6))
    # tiny = 1e-6 * max|ref| = 2e-6: one exact zero and one tiny value
    assert s["n_zero_ref"] == 1 and s["n_tiny_ref"] == 1
    assert s["tiny"] == pytest.approx(2e-6)
    assert s["max_rel"] == pytest.approx(1e-7)        # not 1e-7 / 1e-9 = 100
    assert s["worst_rel_index"] == (2,)
    assert s["verdict"] == "pass"                     # 1e-7 <= 1e-6 * 2


def test_worst_relative_index_never_points_at_an_excluded_element():
    ref = np.array([0.0, 1e-9, 1.0])
    s = error_stats(ref, ref + np.array([1e-3, 0.0, 0.0]), TOL0)
    assert s["max_rel"] == 0.0 and s["worst_rel_index"] == (2,)
    assert s["witness"]["rel"] == [0.0, 1.0]


def test_overflowing_difference_fails():
    s = error_stats(np.array([1e308, 0.0]), np.array([-1e308, 0.0]), tol(atol=1.0))
    assert s["verdict"] == "fail" and s["margin"] == math.inf and s["nonfinite"]["elements"] == 0


def test_tiny_rel_parameter_and_all_zero_reference():
    ref = np.array([1e-3, 1.0])
    s = error_stats(ref, ref + 1e-6, TOL0, tiny_rel=1e-2)
    assert s["n_tiny_ref"] == 1 and s["max_rel"] == pytest.approx(1e-6)
    s = error_stats(np.zeros(3), np.array([0.0, 1e-3, 0.0]), tol(atol=1e-2))
    assert math.isnan(s["max_rel"]) and s["worst_rel_index"] is None
    assert s["n_zero_ref"] == 3 and s["verdict"] == "pass"


# --------------------------------------------------------------------------- NaN / Inf
def test_nan_equal_nan_still_fails_with_counts():
    ref = np.array([1.0, np.nan, 3.0])
    s = error_stats(ref, ref.copy(), tol(atol=1.0))
    assert s["verdict"] == "fail"
    assert s["nonfinite"] == {"ref_nan": 1, "ref_inf": 0, "cand_nan": 1, "cand_inf": 0, "elements": 1}
    assert s["max_abs"] == 0.0           # statistics of the finite elements
    assert s["mismatch_count"] == 1      # the non-finite element counts as a mismatch
    assert s["margin"] == 0.0


def test_inf_in_ref_and_cand_counted_and_index_maps_back():
    ref = np.array([[1.0, np.inf], [2.0, 3.0]])
    cand = np.array([[1.0, np.inf], [2.5, -np.inf]])
    s = error_stats(ref, cand, tol(atol=1.0))
    assert s["nonfinite"] == {"ref_nan": 0, "ref_inf": 1, "cand_nan": 0, "cand_inf": 2, "elements": 2}
    assert s["verdict"] == "fail"
    assert s["max_abs"] == 0.5 and s["worst_index"] == (1, 0)
    assert s["mismatch_count"] == 2 and s["mismatch_fraction"] == 0.5


def test_nan_only_in_candidate_and_all_nonfinite():
    s = error_stats(np.ones(4), np.array([1.0, np.nan, 1.0, 1.0]), tol(atol=1.0))
    assert s["nonfinite"]["cand_nan"] == 1 and s["nonfinite"]["ref_nan"] == 0 and s["verdict"] == "fail"
    s = error_stats(np.full(2, np.nan), np.full(2, np.nan), tol(atol=1.0))
    assert s["verdict"] == "fail" and math.isnan(s["max_abs"]) and s["mismatch_count"] == 2


def test_nonfinite_fails_even_with_mismatch_allowance():
    s = error_stats(np.ones(100), np.r_[np.nan, np.ones(99)], tol(atol=1.0, frac=0.5))
    assert s["verdict"] == "fail" and s["nonfinite"]["elements"] == 1


def test_nonfinite_values_have_no_minimum_passing_tolerance():
    # no scaling of the tolerance passes a NaN or Inf, whatever the finite elements give
    for cand in (np.r_[np.nan, 1.0, 1.0], np.r_[np.inf, 1.0, 1.0]):
        s = error_stats(np.ones(3), cand, tol(atol=1.0))
        assert s["margin"] == 0.0 and s["min_passing_tolerance"] is None
    s = error_stats(np.full(2, np.nan), np.full(2, np.nan), tol(atol=1.0))
    assert s["min_passing_tolerance"] is None
    assert error_stats(np.ones(3), np.ones(3) + 0.5, tol(atol=0.25))["min_passing_tolerance"] == {
        "rtol": 0.0, "atol": 0.5, "atol_scaled": 0.0}


# --------------------------------------------------------------------------- mismatch fraction
def test_mismatch_fraction_allowance_and_margin():
    ref = np.zeros(100)
    cand = ref.copy()
    cand[:3] = [4.0, 3.0, 2.0]
    cand[3] = 0.5
    s = error_stats(ref, cand, tol(atol=1.0, frac=0.03))
    assert s["verdict"] == "pass" and s["mismatch_count"] == 3 and s["allowed_mismatches"] == 3
    assert s["margin"] == pytest.approx(0.5)          # the 4th largest ratio
    s = error_stats(ref, cand, tol(atol=1.0, frac=0.02))
    assert s["verdict"] == "fail" and s["margin"] == pytest.approx(2.0)   # the 3rd largest
    s = error_stats(ref, cand, tol(rtol=1.0, atol=1.0, frac=0.02))        # array-ratio branch
    assert s["verdict"] == "fail" and s["margin"] == pytest.approx(2.0)


def test_allowed_mismatches_is_robust_to_rounding():
    assert allowed_mismatches(0.29, 100) == 29   # 0.29 * 100 = 28.999999999999996
    assert allowed_mismatches(0.0, 100) == 0
    assert allowed_mismatches(1.0, 7) == 7


# --------------------------------------------------------------------------- complex
def test_complex_phase_wrap_at_pi():
    ref = np.exp(1j * (np.pi - 1e-3)) * np.ones(3)
    cand = np.exp(1j * (-np.pi + 1e-3)) * np.ones(3)
    cs = error_stats(ref, cand, TOL0)["complex_stats"]
    assert cs["phase_max_weighted"] == pytest.approx(2e-3, rel=1e-9)
    assert cs["phase_mean_weighted"] == pytest.approx(2e-3, rel=1e-9)
    assert cs["amp_max_abs"] == pytest.approx(0.0, abs=1e-15)
    # the patch path computes the phase difference from the two angles: it must wrap too
    out = compare_arrays(ref.reshape(1, 1, 1, 3), cand.reshape(1, 1, 1, 3), TOL0, patches=True)
    assert out["errors"]["complex_stats"]["phase_max_weighted"] == pytest.approx(2e-3, rel=1e-9)
    assert out["patch_errors"]["phase_max_weighted"][0, 0] == pytest.approx(2e-3, rel=1e-9)


def test_amplitude_weighted_phase_ignores_noise_at_zero_amplitude():
    ref = np.array([1.0 + 0j, 1e-8 + 0j])
    cand = np.array([np.exp(1e-4j), 1e-8 * np.exp(3j)])
    s = error_stats(ref, cand, TOL0)
    cs = s["complex_stats"]
    assert cs["phase_max_weighted"] == pytest.approx(1e-4, rel=1e-6)   # not 3 rad
    assert cs["phase_worst_index"] == (0,)
    assert cs["phase_mean_weighted"] == pytest.approx((1e-4 + 3e-8) / (1 + 1e-8), rel=1e-6)


def test_complex_difference_amplitude_and_phase():
    ref, cand = np.array([2.0 + 0j]), np.array([0.0 + 2j])
    s = error_stats(ref, cand, TOL0)
    assert s["max_abs"] == pytest.approx(2 * math.sqrt(2))
    assert s["complex_stats"]["amp_max_abs"] == pytest.approx(0.0, abs=1e-15)
    assert s["complex_stats"]["phase_max_weighted"] == pytest.approx(math.pi / 2)
    assert s["complex"] is True


# --------------------------------------------------------------------------- ULP
def test_ulp_distance_float32_and_float64():
    one32 = np.float32(1.0)
    c = one32
    for _ in range(3):
        c = np.nextafter(c, np.float32(2))
    s = error_stats(np.array([1.0, 1.0], np.float32), np.array([one32, c], np.float32), TOL0)
    assert s["ulp"] == {"grid": "float32", "max": 3.0, "p99": pytest.approx(np.quantile([0, 3.0], 0.99))}
    c64 = np.nextafter(np.nextafter(1.0, 2.0), 2.0)
    s = error_stats(np.array([1.0]), np.array([c64]), TOL0)
    assert s["ulp"]["grid"] == "float64" and s["ulp"]["max"] == 2.0
    # the grid is the candidate's: a float64 reference vs a float32 candidate
    s = error_stats(np.array([1.0 + 2 ** -23]), np.array([1.0], np.float32), TOL0)
    assert s["ulp"]["grid"] == "float32" and s["ulp"]["max"] == pytest.approx(1.0)


def test_ulps_match_np_spacing():
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal(1000)) * 10.0 ** rng.integers(-40, 30, 1000)
    x[:3] = [0.0, 1e-45, 2.0]
    got = ulps(np.ones(1000), x, np.dtype(np.float32))
    want = 1.0 / np.spacing(x.astype(np.float32)).astype(np.float64)
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- quantiles
@pytest.mark.parametrize("kind", ["random", "ties", "periodic", "small"])
def test_quantiles_match_numpy(kind):
    rng = np.random.default_rng(1)
    n = 1000 if kind == "small" else 200_000
    a = {"random": np.abs(rng.standard_normal(n)), "small": rng.random(n),
         "ties": rng.integers(0, 50, n).astype(float),
         "periodic": np.tile(np.arange(16384.0), n // 16384 + 1)[:n]}[kind]
    qs = (0.0, 0.123, 0.5, 0.99, 1.0)
    np.testing.assert_allclose(quantiles(a, qs), np.quantile(a, qs), rtol=1e-15, atol=0)


def test_compare_arrays_matches_separate_functions():
    rng = np.random.default_rng(3)
    shape = (3, 4, 16, 16)
    for cplx in (False, True):
        ref = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if cplx else 0)
        cand = ref + 1e-3 * rng.standard_normal(shape)
        ref, cand = ref.astype(np.complex64 if cplx else np.float32), cand.astype(np.complex64 if cplx else np.float32)
        out = compare_arrays(ref, cand, tol(rtol=1e-3), patches=True)
        alone = error_stats(ref, cand, tol(rtol=1e-3))
        for k in ("max_abs", "worst_index", "max_rel", "margin", "mismatch_count", "quantiles", "ulp"):
            assert out["errors"][k] == alone[k], k
        assert out["errors"]["rel_l2"] == pytest.approx(alone["rel_l2"], rel=1e-12)  # summed per patch
        pe = patch_errors(ref, cand)
        for k in pe:
            if k != "worst":
                np.testing.assert_allclose(out["patch_errors"][k], pe[k], rtol=1e-9, atol=1e-15)
        for side, x in (("reference", ref), ("candidate", cand)):
            want = patch_stats(x)
            got = out["patch_stats"][side]
            for comp in (("amplitude", "phase") if cplx else (None,)):
                w, g = (want[comp], got[comp]) if comp else (want, got)
                for k in w["per_patch"]:
                    np.testing.assert_allclose(g["per_patch"][k], w["per_patch"][k], rtol=1e-12, atol=1e-15)
                assert g["global_std"] == pytest.approx(w["global_std"], rel=1e-12)


def test_large_stage_runs_chunked_and_consistent():
    rng = np.random.default_rng(4)
    ref = (rng.standard_normal((4, 4, 64, 64)) + 1j * rng.standard_normal((4, 4, 64, 64))).astype(np.complex64)
    cand = (ref * (1 + 1e-6 * rng.standard_normal(ref.shape))).astype(np.complex64)
    s = error_stats(ref, cand, tol(rtol=1e-5))
    d = np.abs(cand.astype(complex) - ref.astype(complex))
    assert s["max_abs"] == d.max()
    assert s["worst_index"] == tuple(int(i) for i in np.unravel_index(d.argmax(), d.shape))
    assert s["quantiles"]["p50"] == pytest.approx(np.quantile(d, 0.5), rel=1e-15)
    assert s["rel_l2"] == pytest.approx(np.linalg.norm(d) / np.linalg.norm(ref.astype(complex)), rel=1e-12)
