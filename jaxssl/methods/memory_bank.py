"""One memory bank: a row per training example, the momentum average of its embeddings from
the epochs it was seen in (NPID's non-parametric classifier weights).

The bank is global and indexed by the example's position in the training split
(``batch["index"]``), so the state, and the run, are the same on any number of devices or
processes.
"""

import jax

from jaxssl.losses import normalize


def momentum_update(
    bank: jax.Array, index: jax.Array, rows: jax.Array, momentum: float
) -> jax.Array:
    """``bank[index] <- normalize(momentum * bank[index] + (1 - momentum) * normalize(rows))``
    (NPID's update, momentum 0.5), without gradient.

    Args:
      bank: ``[N, D]`` unit rows.
      index: ``[B]`` int32 rows to update; an index repeated in the batch keeps one of its
        updates.
      rows: ``[B, D]`` new embeddings.
      momentum: the weight of the old row.

    Returns:
      The updated bank.
    """
    rows = jax.lax.stop_gradient(normalize.l2_normalize(rows)).astype(bank.dtype)
    mixed = momentum * bank[index] + (1.0 - momentum) * rows
    return bank.at[index].set(normalize.l2_normalize(mixed), mode="drop")


def check_size(size: int, data_config) -> None:
    """Raises unless the bank can hold a row per index of the training split.

    ``batch["index"]`` is the position in ``data.train_split``; with ``data.train_classes``
    the kept examples' positions reach beyond ``data.num_train_examples``.
    """
    if len(data_config.get("train_classes", ())) and size <= data_config.num_train_examples:
        raise ValueError(
            f"A memory bank of {size} rows is indexed by position in data.train_split, which "
            "data.train_classes filters but does not renumber: set method.bank_size to the "
            "size of the whole split (e.g. 50000 for CIFAR-10's train)."
        )
