"""Types shared by method modules (the protocol itself is in ``jaxssl/methods/__init__.py``)."""

from typing import Any, NamedTuple

import jax


class LossAux(NamedTuple):
    """What a method's ``loss_fn`` returns beside the loss."""

    features: jax.Array  # [B, V, D] backbone features of batch["global"] (the probe's input)
    batch_stats: Any  # updated BatchNorm statistics
    method_state: Any  # updated method state (returned unchanged if the method has none)
    metrics: dict[str, jax.Array]  # extra scalars to log, e.g. {"train/contrastive_top1": ...}
