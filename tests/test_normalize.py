"""The normaliser on its own, value by value: each method's statistics, constant channels, the
state that travels in checkpoints, and the refusals (what mutation testing found unchecked by the
DataModule-level tests in test_data.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from rnnlab.data.normalize import (
    MAX_ABS_VALUE,
    MIN_ABS_VALUE,
    Normalizer,
    float32_issue,
    outside_float32,
    scale_sequence,
)
from rnnlab.utils.errors import ConfigError

# two sequences of different lengths, three channels; channel 2 constant
SEQUENCES = [
    torch.tensor([[1.0, -2.0, 5.0], [3.0, 0.0, 5.0]]),
    torch.tensor([[5.0, 4.0, 5.0]]),
]


def test_the_default_method_is_zscore():
    assert Normalizer().method == "zscore"
    torch.testing.assert_close(Normalizer().fit(SEQUENCES).shift, torch.tensor([3.0, 2 / 3, 5.0]))


@pytest.mark.parametrize(
    ("method", "shift", "scale"),
    [
        # population std over the 3 pooled steps; the constant channel keeps scale 1
        ("zscore", [3.0, 2 / 3, 5.0], [(8 / 3) ** 0.5, (56 / 9) ** 0.5, 1.0]),
        ("minmax", [1.0, -2.0, 5.0], [4.0, 6.0, 1.0]),
        ("none", [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
    ],
)
def test_each_method_pools_every_step_of_every_sequence(method, shift, scale):
    normalizer = Normalizer(method).fit(SEQUENCES)
    assert normalizer.fitted
    assert normalizer.shift is not None and normalizer.scale is not None
    assert normalizer.shift.dtype == normalizer.scale.dtype == torch.float32
    torch.testing.assert_close(normalizer.shift, torch.tensor(shift))
    torch.testing.assert_close(normalizer.scale, torch.tensor(scale))
    transformed = normalizer.transform(SEQUENCES[0])
    torch.testing.assert_close(
        transformed, (SEQUENCES[0] - torch.tensor(shift)) / torch.tensor(scale)
    )
    assert torch.isfinite(transformed).all()  # the constant channel is centred, not divided by 0
    assert (transformed[:, 2] == 0).all() or method == "none"


def test_unknown_method_is_refused_naming_the_setting_and_the_choices():
    message = "unknown normalisation 'robust'; set data.normalize to one of zscore, minmax, none"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        Normalizer("robust")


def test_transform_before_fit_is_refused_even_half_loaded():
    message = "^Normalizer.transform called before fit or load_state_dict$"
    with pytest.raises(RuntimeError, match=message):
        Normalizer().transform(SEQUENCES[0])
    half = Normalizer()
    half.shift = torch.zeros(3)
    assert half.scale is None
    with pytest.raises(RuntimeError, match=message):
        half.transform(SEQUENCES[0])


def test_state_dict_round_trip_restores_method_and_statistics():
    fitted = Normalizer("minmax").fit(SEQUENCES)
    state = fitted.state_dict()
    assert set(state) == {"method", "shift", "scale"} and state["method"] == "minmax"
    restored = Normalizer()  # zscore until the state says otherwise
    assert not restored.fitted and restored.shift is None and restored.scale is None
    restored.load_state_dict(state)
    assert restored.method == "minmax" and restored.fitted
    torch.testing.assert_close(restored.transform(SEQUENCES[1]), fitted.transform(SEQUENCES[1]))
    assert restored.scale is not None
    torch.testing.assert_close(restored.scale, torch.tensor([4.0, 6.0, 1.0]))


def test_maxabs_divides_each_channel_by_its_peak_and_keeps_zero_channels():
    sequence = torch.tensor([[2.0, 0.0, -1.0], [-4.0, 0.0, 0.5]])
    scaled = scale_sequence(sequence, "maxabs")
    torch.testing.assert_close(scaled, torch.tensor([[0.5, 0.0, -1.0], [-1.0, 0.0, 0.5]]))
    assert scale_sequence(sequence, "none") is sequence


def test_values_outside_float32_training_are_flagged_at_their_exact_bounds():
    big, tiny = MAX_ABS_VALUE, MIN_ABS_VALUE
    values = np.array([0.0, 1.0, -big, big * 1.001, tiny, tiny / 2, -tiny / 2, np.nan])
    assert outside_float32(values).tolist() == [False, False, False, True, False, True, True, False]
    assert float32_issue(-big * 2) == "beyond what float32 training can represent (|x| <= 8.5e+37)"
    assert float32_issue(tiny / 2, "y") == (
        "too small for float32 training, which would round it to 0 or lose its digits "
        "(non-zero |y| >= 1.2e-38)"
    )
