"""Methods by name, and the protocol every method module follows.

A method module provides:

* ``build_model(config) -> nn.Module``: the networks (backbone, heads), with
  ``model.embed(images)`` giving backbone features for evaluation.
* ``loss_fn(model, variables, batch, method_state, config, rng, step) -> (loss, LossAux)``:
  the pre-training loss of a global batch. ``batch["global"]`` holds the views
  ``[B, V, H, W, 3]`` (further view groups, e.g. ``batch["local"]``, may follow),
  ``batch["label"]`` the labels (only label-using methods such as SupCon read them).
  ``config`` is ``config.method``; ``rng`` the step's key; ``step`` the int32 step being
  trained (``state.step``, the same for every micro-batch), for schedules inside the loss
  (DINO's teacher temperature, SwAV's prototype freeze).
* optionally ``init_method_state(model, variables, config) -> pytree``: state that is not
  trained by the optimizer but must be checkpointed (EMA teachers, queues, centers).
  Default: ``{}``.
* optionally ``update_method_state(method_state, params, batch_stats, step, num_steps,
  config) -> pytree``: called after the optimizer update with the new parameters (EMA
  teachers; ``num_steps`` is the run's length, for schedules). Schedules read it here rather
  than from ``config.method``, whose fields must describe the state's shapes only: a
  checkpoint resumes under a different ``train.epochs``.

Everything is traced inside the one jitted train step over the global batch.
"""

from types import ModuleType

from jaxssl.methods import (
    barlow_twins,
    byol,
    dino,
    emp_ssl,
    mocov2,
    mocov3,
    nnclr,
    simclr,
    simsiam,
    supcon,
    swav,
    vicreg,
    wmse,
)
from jaxssl.methods.base import LossAux

__all__ = ["METHODS", "LossAux", "get_method"]

METHODS: dict[str, ModuleType] = {
    "simclr": simclr,
    "byol": byol,
    "simsiam": simsiam,
    "barlow_twins": barlow_twins,
    "vicreg": vicreg,
    "supcon": supcon,
    "wmse": wmse,
    "mocov2": mocov2,
    "mocov3": mocov3,
    "nnclr": nnclr,
    "emp_ssl": emp_ssl,
    "dino": dino,
    "swav": swav,
}


def get_method(name: str) -> ModuleType:
    """The method module registered as ``name``; raises with the valid names."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; valid: {sorted(METHODS)}.")
    return METHODS[name]
