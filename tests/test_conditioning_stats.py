"""VL conditioning statistics (issue 10 groundwork): std matching reaches its target, per_dim gives
unit per-dimension std before scaling, outlier handling touches only the flagged dimensions."""

from __future__ import annotations

import pytest
import torch

from vlmflow.conditioning.stats import (
    blend,
    dimension_std,
    handle_outliers,
    normalise,
    outlier_dimensions,
    std_correlation,
)


@pytest.fixture
def hidden() -> torch.Tensor:
    """(tokens, dim) states with uneven dimension scales and two outlier dimensions (like the seed's
    image tokens: one dimension hundreds of times wider than the median)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 64, generator=g) * torch.linspace(0.5, 2.0, 64) + 3.0
    x[:, 7] *= 600.0
    x[:, 40] *= 40.0
    return x


def test_global_normalisation_reaches_the_target_std_and_keeps_the_shape(hidden):
    out = normalise(hidden, "global", target_std=70.0)
    assert float(out.std(unbiased=False)) == pytest.approx(70.0, rel=1e-4)
    ratio = dimension_std(out) / dimension_std(hidden)
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4)  # one factor for all dimensions


def test_per_dim_gives_unit_std_per_dimension_before_scaling(hidden):
    unit = normalise(hidden, "per_dim", target_std=1.0)
    assert torch.allclose(dimension_std(unit), torch.ones(64), atol=1e-4)
    assert torch.allclose(unit.mean(dim=0), torch.zeros(64), atol=1e-4)
    scaled = normalise(hidden, "per_dim", target_std=70.0)
    assert torch.allclose(scaled, unit * 70.0, atol=1e-3)
    assert normalise(hidden, "none", 70.0) is hidden
    with pytest.raises(ValueError, match="per_dim"):
        normalise(hidden, "perdim", 1.0)


def test_outliers_are_found_by_their_ratio_to_the_median(hidden):
    dims, ratios = outlier_dimensions(hidden, ratio=10.0)
    assert dims.tolist() == [7, 40]
    assert float(ratios[7]) > 300 and 10 < float(ratios[40]) < 100
    assert outlier_dimensions(hidden, ratio=1000.0)[0].numel() == 0


@pytest.mark.parametrize("mode", ["zero", "clamp", "scale"])
def test_outlier_handling_changes_only_the_flagged_dimensions(hidden, mode):
    out = handle_outliers(hidden, ratio=10.0, mode=mode)
    flagged = torch.zeros(64, dtype=torch.bool)
    flagged[[7, 40]] = True
    assert torch.equal(out[:, ~flagged], hidden[:, ~flagged])
    assert not torch.allclose(out[:, flagged], hidden[:, flagged])
    median = float(dimension_std(hidden).median())
    if mode == "zero":
        assert torch.count_nonzero(out[:, flagged]) == 0
    if mode == "scale":  # their std becomes the median dimension's
        assert dimension_std(out)[flagged] == pytest.approx(torch.full((2,), median), rel=1e-3)
    if mode == "clamp":  # within ±ratio x median std of each column's own mean
        centre = hidden[:, flagged].mean(0)
        assert float((out[:, flagged] - centre).abs().max()) <= 10.0 * median * (1 + 1e-5)
    assert handle_outliers(hidden, 10.0, "none") is hidden


def test_blending_mixes_token_by_token_and_cuts_to_the_shorter_sequence():
    vl, ref = torch.ones(5, 8), torch.zeros(3, 8)
    mixed = blend(vl, ref, alpha=0.3)
    assert mixed.shape == (3, 8) and torch.allclose(mixed, torch.full((3, 8), 0.3))
    assert blend(vl, ref, 1.0) is vl and blend(vl, ref, 0.0) is ref
    with pytest.raises(ValueError, match="widths"):
        blend(torch.ones(2, 8), torch.ones(2, 4), 0.5)
    with pytest.raises(ValueError, match="alpha"):
        blend(vl, ref, 1.5)


def test_std_correlation_is_one_for_a_rescaled_copy_and_lower_for_another_shape(hidden):
    assert std_correlation(hidden * 3.0, hidden) == pytest.approx(1.0, abs=1e-5)
    other = torch.randn(200, 64, generator=torch.Generator().manual_seed(1))
    assert std_correlation(other, hidden) < 0.5
