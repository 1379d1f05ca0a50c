"""NPID: instance discrimination against a memory bank of every training example.

Each image is its own class. The backbone's features go through a linear layer to a 128-d
unit embedding, and a non-parametric softmax over the whole training set, whose class
weights are the memory bank's rows (the running average of each example's embeddings),
classifies it as itself (`jaxssl.losses.contrastive.instance_discrimination`). After the loss
the example's row moves to ``normalize(m * row + (1 - m) * z)``, ``m = method.bank_momentum``
(0.5; `jaxssl.methods.memory_bank`). One augmented view per image.

As the reference code: the full softmax (its ``nce_k = 0`` path; the NCE approximation with
4096 noise samples is not implemented: at CIFAR scale, 50 000 rows, the exact softmax costs
one ``[B, 50000]`` matrix product); the embedding is the linear layer's output, normalized;
the bank starts as random unit rows (the reference: uniform rows, not normalized). The bank
is indexed by ``batch["index"]``, the example's position in ``data.train_split``.

References:
  Wu, Xiong, Yu & Lin, Unsupervised Feature Learning via Non-Parametric Instance
  Discrimination, CVPR 2018. https://arxiv.org/abs/1805.01978
  (code: zhirongw/lemniscate.pytorch)
"""

import flax.linen as nn
import jax
import ml_collections

from jaxssl.losses import contrastive
from jaxssl.methods import base, memory_bank, queue
from jaxssl.models import ssl_model


def build_model(config: ml_collections.ConfigDict) -> ssl_model.SSLModel:
    """Backbone + ``config.model``'s projector (NPID: one linear layer to 128-d)."""
    memory_bank.check_size(config.method.bank_size, config.data)
    return ssl_model.build_model(config)


def init_state(model: nn.Module, variables, config: ml_collections.ConfigDict, key: jax.Array):
    """``{"bank": [bank_size, P]}`` random unit rows."""
    del variables
    dim = model.projector.output_dim
    return {"bank": queue.init(key, config.bank_size, dim)}


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """NPID's loss of a batch: every view classifies its example among the bank's rows.

    Args:
      model: the ``SSLModel``.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]`` ``[B, V, H, W, 3]`` (NPID: ``V = 1``; more views each score
        against the bank and their mean updates the row), ``batch["index"]`` ``[B]``.
      method_state: ``{"bank": [N, P]}``.
      config: ``config.method``: ``temperature``, ``bank_momentum``.
      rng: unused (the model is deterministic).
      step: unused; part of the method protocol.

    Returns:
      ``(loss, base.LossAux)`` with the updated bank.
    """
    del rng, step
    views = batch["global"]
    b, v = views.shape[:2]
    (features, z), batch_stats = ssl_model.apply_views(model, variables, views)  # [B, V, .]
    bank, index = method_state["bank"], batch["index"]
    loss = (
        sum(
            contrastive.instance_discrimination(z[:, i], bank, index, config.temperature)
            for i in range(v)
        )
        / v
    )
    new_bank = memory_bank.momentum_update(bank, index, z.mean(axis=1), config.bank_momentum)
    return loss, base.LossAux(features, batch_stats, {"bank": new_bank}, {}, z)


METHOD = base.Method(build_model=build_model, loss_fn=loss_fn, init_state=init_state)
