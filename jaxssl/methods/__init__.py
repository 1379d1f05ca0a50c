"""Methods by name. Each method module provides ``build_model(config)`` and
``loss_fn(model, variables, views, method_config, rng)``."""

from types import ModuleType

from jaxssl.methods import simclr

METHODS: dict[str, ModuleType] = {"simclr": simclr}


def get_method(name: str) -> ModuleType:
    """The method module registered as ``name``; raises with the valid names."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; valid: {sorted(METHODS)}.")
    return METHODS[name]
