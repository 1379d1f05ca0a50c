"""The config a run was trained with, read back from ``WORKDIR/config.json``.

A config file in the ``jaxssl/configs/X.py:ARG`` sense (``get_config(workdir)``), so
``jaxssl eval`` loads it with the same ``config_flags`` machinery and ``--config.a.b=v``
overrides as ``jaxssl train`` (`jaxssl.cli`):

    jaxssl eval --workdir W        # == --config jaxssl/saved_config.py:W

JSON loses two things that command-line overrides need, and both are restored from the
defaults in ``jaxssl/configs/base.py``: tuples (JSON arrays come back as tuples) and the type
of fields saved as ``null`` (e.g. ``data.data_dir``). Fields the saved config lacks (evaluator
settings added after the run was trained) take their current defaults from
``jaxssl/configs/base.py``, which has no method section: the saved one stays as it was.
"""

import json
import os
from typing import Any

import ml_collections

from jaxssl import errors
from jaxssl.configs import base

CONFIG_FILE = "config.json"


def _typed_none(template: ml_collections.ConfigDict | None, key: str) -> Any:
    """A ``None`` field typed like ``template.key`` (default ``str``), so it can be overridden."""
    field_type = str
    if isinstance(template, ml_collections.ConfigDict) and key in template:
        reference = template.get_ref(key)
        if reference.get_type() is not type(None):
            field_type = reference.get_type()
    return ml_collections.FieldReference(None, field_type=field_type)


def _to_config(
    saved: dict, template: ml_collections.ConfigDict | None
) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    for key, value in saved.items():
        sub_template = (
            template.get(key) if isinstance(template, ml_collections.ConfigDict) else None
        )
        if isinstance(value, dict):
            config[key] = _to_config(value, sub_template)
        elif isinstance(value, list):
            config[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        elif value is None:
            config[key] = _typed_none(template, key)
        else:
            config[key] = value
    if isinstance(template, ml_collections.ConfigDict):
        for key in template:
            if key not in config:
                default = template[key]
                if isinstance(default, ml_collections.ConfigDict):
                    default = ml_collections.ConfigDict(default.to_dict())
                config[key] = default
    return config


def load(workdir: str) -> ml_collections.ConfigDict:
    """The run config of ``workdir`` (unlocked), missing fields filled from the base config.

    Args:
      workdir: a training run's directory, holding ``config.json``.

    Returns:
      The config.

    Raises:
      FileNotFoundError: ``workdir`` has no ``config.json``.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise errors.MissingFileError(
            f"{path} not found: --workdir must be the directory of a run made by `jaxssl train`."
        )
    with open(path) as f:
        saved = json.load(f)
    # Runs from before the host/device split of the augmentation saved this switch; the
    # pipeline no longer has it (crops on the host, colours in the train step, always).
    saved.get("data", {}).pop("augment_on_device", None)
    # The base config has no method section, so nothing is filled into the saved one: the
    # checkpoint's method section stays exactly the one it was trained with.
    return _to_config(saved, base.get_base_config())


def get_config(workdir: str | None = None) -> ml_collections.ConfigDict:
    """``config_flags`` entry point: ``--config jaxssl/saved_config.py:WORKDIR``."""
    if not workdir:
        raise errors.ConfigError("Usage: --config jaxssl/saved_config.py:WORKDIR.")
    return load(workdir)
