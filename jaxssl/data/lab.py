"""CIE Lab colour (D65 white, sRGB primaries) and the quantized ab plane of colorization.

``rgb_to_lab`` is the standard conversion (IEC 61966-2-1 sRGB transfer function, the sRGB to
XYZ matrix, CIE 1976 L*a*b* against the D65 white point), as ``skimage.color.rgb2lab``.
``ab_bin_centres`` is Zhang et al.'s quantization: the ab plane cut into 10 x 10 cells, of
which only the cells sRGB colours reach are kept (Zhang et al. keep 313 "in-gamut" cells;
here the gamut is that of a dense grid of sRGB colours, a deterministic computation).

References:
  Zhang, Isola & Efros, Colorful Image Colorization, ECCV 2016.
  https://arxiv.org/abs/1603.08511
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

_RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_D65_WHITE = (0.95047, 1.0, 1.08883)
_DELTA = 6.0 / 29.0


def rgb_to_lab(rgb):
    """sRGB in [0, 1] ``[..., 3]`` -> ``[..., 3]`` (L in [0, 100], a and b in about
    [-110, 110]). Works on numpy and jax arrays alike (``jnp`` for jax, ``np`` otherwise)."""
    xp = jnp if isinstance(rgb, jax.Array) else np
    rgb = xp.clip(rgb, 0.0, 1.0)
    linear = xp.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = (
        linear
        @ xp.asarray(_RGB_TO_XYZ, dtype=linear.dtype).T
        / xp.asarray(_D65_WHITE, dtype=linear.dtype)
    )
    f = xp.where(
        xyz > _DELTA**3,
        xp.cbrt(xp.maximum(xyz, _DELTA**3)),
        xyz / (3 * _DELTA**2) + 4.0 / 29.0,
    )
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return xp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


@functools.lru_cache(maxsize=4)
def ab_bin_centres(grid: int = 10, resolution: int = 64) -> np.ndarray:
    """Centres ``[Q, 2]`` of the ``grid``-sized ab cells reached by any sRGB colour of a
    ``resolution``-per-channel grid, sorted by (a, b). ``grid=10`` gives the in-gamut bins of
    Zhang et al. (313 on their ImageNet-derived gamut)."""
    levels = np.linspace(0.0, 1.0, resolution)
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    ab = rgb_to_lab(rgb)[:, 1:]
    cells = np.unique(np.floor(ab / grid).astype(np.int64), axis=0)  # sorted rows
    return ((cells + 0.5) * grid).astype(np.float32)
