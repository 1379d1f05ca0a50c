"""Methods by name: one explicit dict of `Method` values (the protocol is in ``base.py``).

A method is a value, ``Method(build_model, loss_fn, init_state, update_state)``, of pure
functions that the one jitted train step calls; each module ends with ``METHOD = Method(...)``
and no method module imports another. Shared pieces: ``teacher.py`` (the EMA teacher of BYOL,
MoCo, DINO and I-JEPA), ``queue.py`` (the FIFO queue of MoCo v2, NNCLR and SwAV).
"""

from jaxssl import errors
from jaxssl.methods import (
    autoencoder,
    barlow_twins,
    byol,
    colorization,
    cpc,
    deepcluster,
    dino,
    emp_ssl,
    ijepa,
    jigsaw,
    lejepa,
    mae,
    mmcr,
    mocov2,
    mocov3,
    nnclr,
    npid,
    rotnet,
    sie,
    simclr,
    simsiam,
    swav,
    tico,
    vicreg,
    vicregl,
    wmse,
)
from jaxssl.methods.base import LossAux, Method, keep_state, no_state

__all__ = ["METHODS", "LossAux", "Method", "get_method", "keep_state", "no_state"]

METHODS: dict[str, Method] = {
    "simclr": simclr.METHOD,
    "byol": byol.METHOD,
    "simsiam": simsiam.METHOD,
    "barlow_twins": barlow_twins.METHOD,
    "vicreg": vicreg.METHOD,
    "vicregl": vicregl.METHOD,
    # SIE: VICReg split into invariant and transformation-equivariant parts (sie_cifar10.py).
    "sie": sie.METHOD,
    # SupCon is SimCLR's method over the label graph (config.method.graph = "label").
    "supcon": simclr.METHOD,
    # DCL / DCLW are SimCLR's method with the decoupled loss (config.method.decoupled).
    "dcl": simclr.METHOD,
    "wmse": wmse.METHOD,
    "mocov2": mocov2.METHOD,
    "mocov3": mocov3.METHOD,
    "nnclr": nnclr.METHOD,
    "emp_ssl": emp_ssl.METHOD,
    "dino": dino.METHOD,
    # DINOv2-style: DINO with iBOT, KoLeo and Sinkhorn-Knopp centering (dinov2_cifar10.py).
    "dinov2": dino.METHOD,
    "swav": swav.METHOD,
    "lejepa": lejepa.METHOD,
    "mae": mae.METHOD,
    "ijepa": ijepa.METHOD,
    "tico": tico.METHOD,
    "mmcr": mmcr.METHOD,
    # The classic pretext tasks (issue: before joint embeddings).
    "rotnet": rotnet.METHOD,
    "jigsaw": jigsaw.METHOD,
    "npid": npid.METHOD,
    # The denoising autoencoder and the context encoder: one reconstruction method,
    # config.method.corruption = drop_pixels | center_block | random_block.
    "dae": autoencoder.METHOD,
    "context_encoder": autoencoder.METHOD,
    "colorization": colorization.METHOD,
    "cpc": cpc.METHOD,
    "deepcluster": deepcluster.METHOD,
}


def get_method(name: str) -> Method:
    """The method registered as ``name``; raises with the valid names."""
    if name not in METHODS:
        raise errors.ConfigError(f"Unknown method {name!r}; valid: {sorted(METHODS)}.")
    return METHODS[name]
