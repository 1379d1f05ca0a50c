"""The convolution lowering switch: which lowering "auto" picks, and that it changes nothing."""

import jax
import numpy as np
import pytest

from jaxssl.models import conv, resnet


def test_auto_picks_im2col_only_for_tiny_maps_on_cpu():
    assert conv.resolve_implementation("auto", (2, 2), backend="cpu") == "im2col"
    assert conv.resolve_implementation("auto", (1, 1), backend="cpu") == "im2col"
    assert conv.resolve_implementation("auto", (3, 3), backend="cpu") == "native"
    assert conv.resolve_implementation("auto", (2, 5), backend="cpu") == "native"
    for accelerator in ("tpu", "gpu", "cuda", "rocm"):
        assert conv.resolve_implementation("auto", (2, 2), backend=accelerator) == "native"
    # Explicit choices are never overridden.
    assert conv.resolve_implementation("native", (2, 2), backend="cpu") == "native"
    assert conv.resolve_implementation("im2col", (32, 32), backend="tpu") == "im2col"
    with pytest.raises(ValueError, match="valid: auto, native, im2col"):
        conv.resolve_implementation("winograd", (2, 2))


def test_auto_resnet_matches_native_where_it_lowers_differently():
    # 12 px inputs: the last stage works on 2x2 maps, where "auto" uses im2col on CPU.
    assert jax.default_backend() == "cpu"
    x = np.random.default_rng(0).normal(size=(4, 12, 12, 3)).astype(np.float32)
    variables = resnet.make_backbone("resnet18", width=4).init(jax.random.key(0), x, train=False)
    outputs, programs = {}, {}
    for implementation in ("native", "auto"):
        model = resnet.make_backbone("resnet18", width=4, conv_impl=implementation)
        apply_fn = jax.jit(lambda v, x, model=model: model.apply(v, x, train=False))
        outputs[implementation] = apply_fn(variables, x)
        programs[implementation] = apply_fn.lower(variables, x).as_text()
    np.testing.assert_allclose(outputs["native"], outputs["auto"], atol=1e-5, rtol=1e-5)
    # "auto" really lowered differently: the 2x2-output convolutions became matrix products.
    assert programs["auto"].count("convolution") < programs["native"].count("convolution")
