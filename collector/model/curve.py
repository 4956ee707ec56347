"""Power at a utilisation on an 11-point SPECpower curve: the one interpolation rule."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from collector.model import coefficients as c

FloatArray = npt.NDArray[np.float64]


def curve_watts_at(curve_watts: npt.ArrayLike, utilisation: npt.ArrayLike) -> FloatArray:
    """Piecewise-linear interpolation of 11-point SPECpower curves.

    curve_watts: shape (11,) for one curve, or (n, 11) for one curve per element;
    utilisation: values in [0, 1] (clipped), broadcast against the curves.
    """
    watts = np.asarray(curve_watts, dtype=np.float64)
    u = np.clip(np.asarray(utilisation, dtype=np.float64), 0.0, 1.0)
    steps = len(c.SPECPOWER_UTILISATION_POINTS) - 1
    position = u * steps
    lower = np.minimum(np.floor(position).astype(np.intp), steps - 1)
    fraction = position - lower
    if watts.ndim == 1:
        low, high = watts[lower], watts[lower + 1]
    else:
        rows = np.arange(watts.shape[0])
        low, high = watts[rows, lower], watts[rows, lower + 1]
    result: FloatArray = low + fraction * (high - low)
    return result
