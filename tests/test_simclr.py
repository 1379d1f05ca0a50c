"""SimCLR's loss implementations agree inside the jitted train step on 8 devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import sharding, trainer
from jaxssl.configs import dcl_cifar10, simclr_cifar10
from jaxssl.losses import contrastive
from jaxssl.methods import simclr
from tests import helpers


def _config(loss_impl, grad_accum_steps=1):
    config = simclr_cifar10.get_config("smoke")
    config.optim.name = "sgd"  # LARS+warmup starts at lr 0; SGD moves params on step 1
    config.optim.warmup_epochs = 0.0
    config.method.loss_impl = loss_impl
    config.method.loss_chunk_size = 24  # 64 views: 3 chunks, the last one padded
    config.train.grad_accum_steps = grad_accum_steps
    config.mesh.data = 8
    return config


def _batch(config, mesh):
    rng = np.random.default_rng(0)
    b = config.train.batch_size
    host_batch = {
        "global": rng.normal(size=(b, 2, 32, 32, 3)).astype(np.float32),
        "label": rng.integers(0, 10, size=(b,)).astype(np.int32),
        "index": np.arange(b, dtype=np.int32),
    }
    return sharding.to_global(host_batch, mesh)


def _uses_shard_map(train_step, state, batch) -> bool:
    return "shard_map" in str(train_step.trace(state, batch).jaxpr)


@pytest.mark.slow  # ~40 s; the blockwise loss against the dense one stays in the default lane
def test_blockwise_loss_equals_dense_in_the_train_step():
    mesh = sharding.make_mesh(_config("dense").mesh)
    runs = {impl: trainer.build(_config(impl), mesh) for impl in ("dense", "blockwise")}
    state = jax.jit(runs["dense"].init_fn, out_shardings=sharding.replicated(mesh))(
        runs["dense"].init_key
    )
    batch = _batch(_config("dense"), mesh)
    results = {}
    for impl, run in runs.items():
        # The step finds the mesh from its inputs' shardings: trainer.py needs no jax.set_mesh.
        assert _uses_shard_map(run.train_step, state, batch) == (impl == "blockwise")
        donated = jax.tree.map(jnp.copy, state)
        results[impl] = jax.device_get(run.train_step(donated, batch))
    (dense_state, dense), (blockwise_state, blockwise) = results["dense"], results["blockwise"]
    for key in ("train/loss", "train/grad_norm", "train/contrastive_top1"):
        np.testing.assert_allclose(blockwise[key], dense[key], rtol=1e-5, err_msg=key)
    for a, b in zip(
        *map(jax.tree.leaves, (dense_state.params, blockwise_state.params)), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_blockwise_loss_in_micro_batches_runs_per_device():
    config = _config("blockwise", grad_accum_steps=2)
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    state = jax.eval_shape(run.init_fn, run.init_key)  # tracing needs no values
    assert _uses_shard_map(run.train_step, state, _batch(config, mesh))


def test_unknown_loss_impl_lists_the_valid_ones():
    views = jnp.zeros((4, 2, 8, 8, 3))
    with pytest.raises(ValueError, match="'blockwise', 'dense'"):
        simclr.loss_fn(None, None, {"global": views}, {}, _config("sparse").method, None, 0)


@pytest.mark.slow  # ~40 s; tests/test_step.py keeps SimCLR 1-vs-8 in the default lane
def test_multi_crop_loss_is_the_same_on_one_and_eight_devices():
    losses = []
    for devices in (1, 8):
        config = _config("dense")
        config.mesh.data = devices
        config.data.local_views = 2
        mesh = sharding.make_mesh(config.mesh)
        run = trainer.build(config, mesh)
        batch = _batch(config, mesh)
        rng = np.random.default_rng(1)
        local = rng.normal(size=(config.train.batch_size, 2, 16, 16, 3)).astype(np.float32)
        batch["local"] = sharding.to_global({"local": local}, mesh)["local"]
        state, metrics = run.train_step(run.init_state(), batch)
        losses.append(float(metrics["train/loss"]))
        # 4 views per image: 3 positives per anchor among 4B - 1 candidates.
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        loss, _ = jax.jit(
            lambda v, b, run=run, config=config: simclr.loss_fn(
                run.model, v, b, {}, config.method, None, 0
            )
        )(variables, batch)
        without_local, _ = jax.jit(
            lambda v, b, run=run, config=config: simclr.loss_fn(
                run.model, v, {"global": b["global"]}, {}, config.method, None, 0
            )
        )(variables, batch)
        assert float(loss) > float(without_local)  # more positives and negatives per anchor
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_supcon_graphs_give_the_expected_positives():
    from jaxssl.losses import contrastive

    config = simclr_cifar10.get_config("smoke").method
    image_ids = contrastive.augmentation_graph_ids(4, 2)  # [0 0 1 1 2 2 3 3]
    labels = jnp.array([7, 3, 7, 5])
    index = jnp.arange(4)
    np.testing.assert_array_equal(simclr.graph_ids(image_ids, labels, index, config), image_ids)
    config.graph = "label"
    np.testing.assert_array_equal(
        simclr.graph_ids(image_ids, labels, index, config), [7, 7, 3, 3, 7, 7, 5, 5]
    )
    config.graph = "union"
    config.label_fraction = 0.0  # nothing labelled: the augmentation graph
    ids = simclr.graph_ids(image_ids, labels, index, config)
    np.testing.assert_array_equal(
        contrastive.positives_from_ids(ids), contrastive.positives_from_ids(image_ids)
    )
    config.label_fraction = 1.0
    np.testing.assert_array_equal(
        simclr.graph_ids(image_ids, labels, index, config), [7, 7, 3, 3, 7, 7, 5, 5]
    )
    # About the asked fraction of a split is labelled, the same examples every time.
    mask = np.asarray(simclr.labelled(jnp.arange(50_000), 0.1))
    assert abs(mask.mean() - 0.1) < 0.01
    config.graph = "labels"
    with pytest.raises(ValueError, match="method.graph"):
        simclr.graph_ids(image_ids, labels, index, config)


def test_supcon_step_uses_labels():
    from jaxssl.configs import supcon_cifar10

    config = supcon_cifar10.get_config("smoke")
    config.mesh.data = 8
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    batch = _batch(config, mesh)
    _, metrics = run.train_step(run.init_state(), batch)
    relabelled = dict(
        batch, label=sharding.to_global({"label": np.zeros(32, np.int32)}, mesh)["label"]
    )
    _, one_class = run.train_step(run.init_state(), relabelled)
    assert float(metrics["train/loss"]) != float(one_class["train/loss"])


def test_dcl_method_is_the_decoupled_loss_of_the_projections_and_checks_its_views():
    config, mesh, run, state = helpers.smoke_run(dcl_cifar10.get_config("smoke"))
    config.method.vmf_sigma = 0.5  # DCLW
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    batch = _batch(config, mesh)
    key = jax.random.key(0)
    loss, aux = jax.jit(
        lambda b: simclr.loss_fn(run.model, variables, b, {}, config.method, key, 0)
    )(batch)
    b = config.train.batch_size
    _, z = run.model.apply(
        variables, batch["global"].reshape(2 * b, 32, 32, 3), mutable=["batch_stats"]
    )[0]
    z = z.reshape(b, 2, -1)
    np.testing.assert_allclose(
        loss, contrastive.decoupled_nt_xent(z[:, 0], z[:, 1], 0.1, 0.5), rtol=1e-5
    )
    three_views = dict(batch, **{"global": jnp.concatenate([batch["global"]] * 2, axis=1)[:, :3]})
    with pytest.raises(ValueError, match="two-view"):
        simclr.loss_fn(run.model, variables, three_views, {}, config.method, key, 0)
