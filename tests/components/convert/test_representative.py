"""The calibration set convert hands to the int8 converter."""

import numpy as np

from edgetune.components.convert.core import representative_set


def test_the_representative_set_is_a_seeded_draw_without_repeats_capped_by_the_split():
    x = np.arange(50).reshape(50, 1)

    picked = representative_set(x, 20, seed=4)

    assert len(picked) == 20 and len(np.unique(picked)) == 20
    assert np.array_equal(picked, representative_set(x, 20, seed=4))
    assert not np.array_equal(picked, representative_set(x, 20, seed=5))
    assert len(representative_set(x, 200, seed=4)) == 50
