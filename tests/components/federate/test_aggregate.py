"""FedAvg on checked updates: weighted by samples, clipped, noised; bad updates named."""

import base64

import numpy as np
import pytest

from edgetune.components.federate.aggregate import DeviceUpdate, UpdateRefused, check_update, fedavg
from edgetune.errors import EdgetuneError

SHAPE = (4, 3)


def doc(kernel, bias, n=10, **changes):
    b64 = lambda a: base64.b64encode(np.asarray(a, "<f4").tobytes()).decode()  # noqa: E731
    d = {"extractor_sha256": "e" * 64, "base_head_sha256": "h" * 64, "shape": list(SHAPE),
         "dtype": "float32", "n_samples": n, "delta_kernel": b64(kernel), "delta_bias": b64(bias)}  # fmt: skip
    return {**d, **changes}


def check(d):
    return check_update("dev", d, SHAPE, "e" * 64, "h" * 64)


def update(value, n):
    return DeviceUpdate(
        "d", n, np.full(SHAPE, value, np.float32), np.full(3, value, np.float32), {}
    )


def test_the_average_is_weighted_by_sample_counts():
    kernel, bias, info = fedavg([update(1.0, 10), update(4.0, 30)])

    np.testing.assert_allclose(kernel, np.full(SHAPE, 3.25), rtol=1e-6)
    np.testing.assert_allclose(bias, np.full(3, 3.25), rtol=1e-6)
    assert info["weights"] == [0.25, 0.75] and info["clipped"] == 0 and info["noise_std"] == 0


def test_clipping_bounds_each_update_and_noise_follows_the_clip():
    big, small = update(10.0, 1), update(0.01, 1)
    kernel, bias, info = fedavg([big, small], clip_norm=1.0)
    assert info["clipped"] == 1
    assert np.sqrt(np.sum(kernel**2) + np.sum(bias**2)) <= 1.0  # the mean of two norms <= 1

    noisy, _, info = fedavg([big, small], clip_norm=1.0, noise_multiplier=2.0, seed=0)
    assert info["noise_std"] == pytest.approx(2.0 * 1.0 * 0.5)
    assert not np.allclose(noisy, kernel)
    with pytest.raises(EdgetuneError, match="noise_multiplier > 0 needs clip_norm > 0"):
        fedavg([big], noise_multiplier=1.0)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"shape": [5, 3]}, "head shape [5, 3] float32; expected [4, 3] float32"),
        ({"extractor_sha256": "x" * 64}, "trained on another extractor"),
        ({"n_samples": 0}, "n_samples=0; expected a positive integer"),
        ({"delta_bias": "!!"}, "delta_bias missing or not base64"),
    ],
)
def test_a_bad_update_is_refused_with_its_reason(changes, reason):
    with pytest.raises(UpdateRefused, match=reason.replace("[", r"\[").replace("]", r"\]")):
        check(doc(np.zeros(SHAPE), np.zeros(3), **changes))


def test_nan_or_inf_weights_are_refused_and_a_good_update_reads_back():
    kernel = np.arange(12, dtype=np.float32).reshape(SHAPE)
    assert np.array_equal(check(doc(kernel, np.ones(3))).delta_kernel, kernel)
    kernel[1, 2] = np.nan
    with pytest.raises(UpdateRefused, match="delta_kernel holds NaN or inf"):
        check(doc(kernel, np.ones(3)))
    with pytest.raises(UpdateRefused, match="delta_bias holds NaN or inf"):
        check(doc(np.zeros(SHAPE), [0, np.inf, 0]))
