"""TPU chips and topologies: published chip figures, and the devices of a topology description.

`devices("v5e:16x16")` returns the 256 devices of a v5e pod as a TPU *topology description*
(`jax.experimental.topologies`): devices that can be placed in a mesh and compiled for, on a
machine without TPUs, once ``libtpu`` is installed (``pip install -e ".[tpu]"``). ``jaxssl
compile`` (`jaxssl.aot`) builds the train step over them.

Chip figures (``CHIPS``) are the vendor's published peak numbers, per chip:

=====  ========  =========  ==========  ============  ============  ===========================
chip   devices   bf16 peak  HBM         HBM bandw.    ICI (bidir.)  source
=====  ========  =========  ==========  ============  ============  ===========================
v2     2 cores   45 TF/s    16 GiB      700 GB/s      248 GB/s      [J20] Table 3, [C17]
v3     2 cores   123 TF/s   32 GiB      900 GB/s      328 GB/s      [V3], ICI [J20] Table 3
v4     1 (mega)  275 TF/s   32 GiB      1200 GB/s     600 GB/s      [V4], ICI [J23]
v5e    1         197 TF/s   16 GiB      819 GB/s      400 GB/s      [V5E]
v5p    1 (mega)  459 TF/s   95 GiB      2765 GB/s     1200 GB/s     [V5P]
v6e    1         918 TF/s   32 GiB      1638 GB/s     800 GB/s      [V6E]
=====  ========  =========  ==========  ============  ============  ===========================

v2 and v3 chips have two TensorCores that JAX sees as two devices (each with half the chip's
HBM, FLOP/s and links); v4 and v5p chips have two TensorCores fused into one "megacore" device,
the default on those chips. ICI is the chip's total bidirectional inter-chip bandwidth
(v2/v3: 4 links of 496 / 656 Gbit/s; v4: 6 links of 50 GB/s each way). Google's pages give HBM
capacities partly in GB and partly in GiB; they are taken as GiB here (what the TPU runtime
reports, less a small reserve: a step that uses more than ~97% of it may still fail).

References:
  [V3] https://cloud.google.com/tpu/docs/v3, [V4] https://cloud.google.com/tpu/docs/v4,
  [V5E] https://cloud.google.com/tpu/docs/v5e, [V5P] https://cloud.google.com/tpu/docs/v5p,
  [V6E] https://cloud.google.com/tpu/docs/v6e (Cloud TPU system architecture pages).
  [J20] Jouppi et al., `A Domain-Specific Supercomputer for Training Deep Neural Networks
  <https://dl.acm.org/doi/10.1145/3360307>`_, CACM 2020.
  [J23] Jouppi et al., `TPU v4: An Optically Reconfigurable Supercomputer for Machine Learning
  with Hardware Support for Embeddings <https://arxiv.org/abs/2304.01433>`_, ISCA 2023.
  [C17] Cloud TPU v2 announcement: 180 TFLOP/s per 4-chip board.
"""

import math
import os
from typing import Any, NamedTuple

from jaxssl import errors

GiB = 2**30


class Chip(NamedTuple):
    """Published peak figures of one TPU chip (not of one JAX device: see ``devices_per_chip``)."""

    name: str
    devices_per_chip: int  # JAX devices per chip (2 TensorCores on v2/v3; megacore elsewhere)
    chip_config: str  # libtpu's chip configuration for the topology description
    peak_bf16_flops: float  # FLOP/s
    hbm_bytes: int
    hbm_bandwidth: float  # bytes/s
    ici_bandwidth: float  # bytes/s, bidirectional, all links of the chip
    chips_per_host: tuple[int, int, int]  # host bounds of the largest VM shape


CHIPS: dict[str, Chip] = {
    "v2": Chip("v2", 2, "default", 45e12, 16 * GiB, 700e9, 248e9, (2, 2, 1)),
    "v3": Chip("v3", 2, "default", 123e12, 32 * GiB, 900e9, 328e9, (2, 2, 1)),
    "v4": Chip("v4", 1, "megacore", 275e12, 32 * GiB, 1200e9, 600e9, (2, 2, 1)),
    "v5e": Chip("v5e", 1, "default", 197e12, 16 * GiB, 819e9, 400e9, (2, 4, 1)),
    "v5p": Chip("v5p", 1, "megacore", 459e12, 95 * GiB, 2765e9, 1200e9, (2, 2, 1)),
    "v6e": Chip("v6e", 1, "default", 918e12, 32 * GiB, 1638e9, 800e9, (2, 4, 1)),
}

INSTALL_HINT = (
    'Compiling for a TPU topology needs libtpu: pip install -e ".[tpu]" (jax[tpu] of the '
    "installed jax version; about 700 MB). Run with JAX_PLATFORMS=cpu on a machine without TPUs."
)


def parse(topology: str) -> tuple[Chip, tuple[int, ...]]:
    """``"v5e:16x16"`` -> (the v5e ``Chip``, ``(16, 16)``): the chip and the grid of chips.

    Raises:
      ValueError: an unknown chip or a malformed grid, naming the valid chips.
    """
    name, _, grid = topology.partition(":")
    if name not in CHIPS or not grid:
        raise errors.ConfigError(
            f"Unknown topology {topology!r}: use CHIP:AxB[xC] with CHIP one of "
            f"{', '.join(CHIPS)}, e.g. v5e:16x16 (256 chips) or v4:4x4x8 (128 chips)."
        )
    try:
        dims = tuple(int(d) for d in grid.split("x"))
    except ValueError:
        raise errors.ConfigError(
            f"Malformed chip grid {grid!r} in {topology!r}; e.g. 4x4x8."
        ) from None
    return CHIPS[name], dims


def host_bounds(chip: Chip, dims: tuple[int, ...]) -> tuple[int, int, int]:
    """Chips per host: the chip's largest VM shape, cut down to a grid smaller than one host."""
    grid = (*dims, 1, 1)[:3]
    return tuple(min(h, g) for h, g in zip(chip.chips_per_host, grid, strict=True))


def devices(topology: str, num_slices: int = 1) -> list[Any]:
    """The devices of ``num_slices`` slices of ``topology``, for compiling (not for running).

    Args:
      topology: ``CHIP:AxB[xC]``, e.g. ``"v5e:16x16"``, ``"v4:4x4x8"``, ``"v3:16x16"``.
      num_slices: slices joined over the data-centre network (multi-slice).

    Returns:
      The devices, ordered by slice, then by the TPU runtime's device order.

    Raises:
      RuntimeError: libtpu is not installed (the message says how to install it).
      ValueError: an unknown topology.
    """
    chip, dims = parse(topology)
    if not libtpu_available():
        raise errors.UserError(INSTALL_HINT)
    import jax  # noqa: PLC0415
    from jax.experimental import topologies  # noqa: PLC0415

    if jax.default_backend() == "cpu":
        # Compiling only, no chip opened: libtpu's one-process lock (meant for a TPU host's
        # chips) would refuse a second compile beside this one (two shells, a test lane).
        os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    description = topologies.get_topology_desc(
        platform="tpu",
        topology_name=topology,
        chip_config_name=chip.chip_config,
        chips_per_host_bounds=host_bounds(chip, dims),
        num_slices=num_slices,
    )
    found = list(description.devices)
    expected = math.prod(dims) * chip.devices_per_chip * num_slices
    if len(found) != expected:
        raise ValueError(f"{topology} x {num_slices} gave {len(found)} devices, not {expected}.")
    return found


def libtpu_available() -> bool:
    """Whether libtpu is importable (topology descriptions need it)."""
    import importlib.util  # noqa: PLC0415

    return importlib.util.find_spec("libtpu") is not None
