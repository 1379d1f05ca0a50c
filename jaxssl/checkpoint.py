"""A thin Orbax ``CheckpointManager`` wrapper: the TrainState plus the config that made it.

Saves are asynchronous and atomic: Orbax writes into a temporary directory and renames it to
``<step>`` only when every file is on disk, so a crash during a save leaves the previous
checkpoints as they were (the temporary directory is removed on the next start). On restore,
a checkpoint that cannot be read (truncated or missing files) is moved aside to
``WORKDIR/checkpoints_corrupt/`` -- never deleted -- and the next older one is used.
"""

import json
import os
import time
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from jaxssl import errors

# Config sections that decide the shapes (and meaning) of the saved state. A checkpoint written
# under different values cannot be resumed by this config.
_STATE_DEFINING = ("model", "method")


class IncompatibleCheckpointError(errors.UserError, ValueError):
    """The workdir holds a checkpoint of a different model than the config describes."""


class NoUsableCheckpointError(errors.UserError, RuntimeError):
    """Every checkpoint in the workdir was unreadable (all were moved aside, none deleted)."""


# Fields of those sections that do not change what the state means: how it is computed
# (dtype, convolution lowering), or fields the backbone in use does not read.
_COMPUTE_ONLY = {"dtype", "conv_impl"}
# Fields that only set initial values: a resumed state has its own.
_INIT_ONLY = {"projector_init_scale"}
# How features are read out of the same parameters: evaluating a CLS-trained ViT by the mean of
# its patch tokens (`jaxssl eval --config.model.pooling=mean`) is a protocol of its own.
_READOUT_ONLY = {"pooling"}
_VIT_ONLY = {
    "vit_depth",
    "patch_size",
    "image_size",
    "position",
    "num_registers",
    "mask_token",
}
# Fields added after checkpoints were written, with the value that reproduces the older
# behaviour: a checkpoint whose config lacks them was trained with that value (both sides get
# the defaults, so a method without the field compares equal too). JSON values, as saved.
_ADDED_LATER = {
    "model": {
        "position": "learned",
        "num_registers": 0,
        "mask_token": False,
        "vit_depth": 0,
        "last_block_width": 0,
    },
    "method": {  # DINO's DINOv2 options
        "koleo_weight": 0.0,
        "ibot_weight": 0.0,
        "mask_probability": 0.5,
        "mask_ratio": [0.1, 0.5],
        "centering": "center",
        "center_embeddings": False,  # TiCo's lightly options
        "base_momentum": 0.0,
        "num_negatives": 0,  # SimCLR with a subset of negatives
        "negative_similarity": "cosine",  # SimCLR-abs / -sq
        "variant": "vicreg",  # VICReg-exp / -ctr
        "exp_temperature": 0.1,
    },
}
_RESNET_ONLY = {"width", "stem", "bn_momentum", "last_block_width"}


def _defining(config: dict) -> dict:
    """The model and method sections of ``config``, less the keys that do not define the state."""
    defining = {k: {**_ADDED_LATER.get(k, {}), **(config.get(k) or {})} for k in _STATE_DEFINING}
    model = defining["model"]
    ignored = (
        _COMPUTE_ONLY
        | _INIT_ONLY
        | _READOUT_ONLY
        | (_RESNET_ONLY if str(model.get("backbone", "")).startswith("vit") else _VIT_ONLY)
    )
    defining["model"] = {k: v for k, v in model.items() if k not in ignored}
    return defining


class Checkpointer:
    """Saves ``TrainState`` every N steps (keeping the last K) and restores onto the mesh.

    Args:
      directory: ``WORKDIR/checkpoints``.
      config: the run config; its model and method sections are stored beside every state and
        compared on restore.
      keep: how many checkpoints to keep.
    """

    def __init__(self, directory: str, config: ml_collections.ConfigDict, keep: int):
        self._config = json.loads(config.to_json())
        self._path = epath.Path(directory)
        if not self._path.is_absolute():
            self._path = epath.Path(os.path.abspath(directory))
        self._keep = keep
        self._manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(
            self._path,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=self._keep, create=True, cleanup_tmp_directories=True
            ),
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "config": ocp.JsonCheckpointHandler(),
            },
        )

    @property
    def directory(self) -> str:
        return str(self._manager.directory)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        """Starts an asynchronous save of ``state`` as step ``step`` (no-op if it exists)."""
        if step in self._manager.all_steps():
            return
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(self._config)
            ),
        )

    def restore(self, abstract_state: Any, step: int | None = None) -> Any:
        """Restores the latest (or given) checkpoint into ``abstract_state``'s shapes and shardings.

        Args:
          abstract_state: a ``jax.eval_shape`` tree of ``jax.ShapeDtypeStruct`` with shardings.
          step: the step to restore; default the latest.

        Returns:
          The restored state, sharded as ``abstract_state`` says.

        Raises:
          IncompatibleCheckpointError: if the checkpoint was written for another model or method.
          Exception: whatever Orbax raises for an unreadable checkpoint.
        """
        step = self._manager.latest_step() if step is None else step
        where = os.path.join(self.directory, str(step))
        saved = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        self._check_config(saved["config"], where)
        self._check_shapes(self._manager.item_metadata(step)["state"], abstract_state, where)
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        )
        return jax.block_until_ready(restored["state"])

    def restore_variables(
        self, abstract_state: Any, step: int | None = None, teacher: bool = False
    ) -> dict[str, Any]:
        """Restores only ``params`` and ``batch_stats``: what evaluation and export need.

        Fields the TrainState gained later (or that another method adds) are not read, so
        checkpoints of older runs still evaluate.

        Args:
          abstract_state: as for ``restore``; only its ``params`` and ``batch_stats`` are used
            (and ``method_state["target"]`` with ``teacher``).
          step: the step to restore; default the latest.
          teacher: also restore the EMA teacher, ``method_state["target"]``
            (``evals.encoder="target"``).

        Returns:
          ``{"params": ..., "batch_stats": ...}`` (and ``"method_state": {"target": ...}``
          with ``teacher``), sharded as ``abstract_state`` says.
        """
        step = self._manager.latest_step() if step is None else step
        where = os.path.join(self.directory, str(step))
        saved = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        self._check_config(saved["config"], where)
        target = {"params": abstract_state.params, "batch_stats": abstract_state.batch_stats}
        if teacher:
            target["method_state"] = {"target": abstract_state.method_state["target"]}
        reader = ocp.CheckpointManager(
            self._path,
            options=ocp.CheckpointManagerOptions(read_only=True),
            item_handlers={"state": ocp.PyTreeCheckpointHandler()},
        )
        try:
            restored = reader.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.PyTreeRestore(
                        item=target,
                        restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                        partial_restore=True,
                    )
                ),
            )
        finally:
            reader.close()
        return jax.block_until_ready(restored["state"])

    def restore_latest_usable(self, abstract_state: Any) -> Any | None:
        """Restores the newest readable checkpoint, moving unreadable newer ones aside.

        A checkpoint whose files are truncated or missing is moved (by process 0) to
        ``WORKDIR/checkpoints_corrupt/<step>-<unix time>`` with a warning naming it and the
        checkpoint used instead. Every process must call this.

        Args:
          abstract_state: as for ``restore``.

        Returns:
          The restored state, or ``None`` if the directory holds no checkpoint.

        Raises:
          IncompatibleCheckpointError: the newest readable checkpoint belongs to another model.
          NoUsableCheckpointError: checkpoints existed but none could be read.
        """
        moved = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                state, error = self.restore(abstract_state, step), None
            except IncompatibleCheckpointError:
                raise
            except Exception as e:  # noqa: BLE001  (any read failure means: unusable)
                state, error = None, e
            if _all_processes_agree(error is None):
                if moved:
                    logging.warning(
                        "Restored step %d instead of the unreadable %s (moved to %s).",
                        step,
                        ", ".join(str(s) for s, _ in moved),
                        ", ".join(str(d) for _, d in moved),
                    )
                return state
            moved.append((step, self._move_aside(step, error)))
        if moved:
            raise NoUsableCheckpointError(
                f"No checkpoint in {self.directory} could be read; all were moved to "
                f"{', '.join(str(d) for _, d in moved)} (nothing was deleted). Rerun to start "
                "from scratch, or restore a backup of the checkpoints directory."
            )
        return None

    def _move_aside(self, step: int, error: Exception | None) -> epath.Path:
        target = self._path.parent / "checkpoints_corrupt" / f"{step}-{int(time.time())}"
        logging.warning(
            "Checkpoint %s is unreadable (%s: %s); moving it to %s and trying the previous one.",
            self._path / str(step),
            type(error).__name__ if error else "failed on another process",
            str(error).splitlines()[0][:300] if error else "",
            target,
        )
        self._manager.close()
        if jax.process_index() == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            (self._path / str(step)).rename(target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"jaxssl_move_aside_{step}")
        self._manager = self._open()
        return target

    def _check_config(self, saved_config: dict, where: str) -> None:
        saved_defining, defining = _defining(saved_config), _defining(self._config)
        if saved_defining == defining:
            return
        diffs = [
            f"  {section}.{key}: checkpoint {saved_defining[section].get(key)!r} != config "
            f"{defining[section].get(key)!r}"
            for section in _STATE_DEFINING
            for key in sorted(set(saved_defining[section]) | set(defining[section]))
            if saved_defining[section].get(key) != defining[section].get(key)
        ]
        raise IncompatibleCheckpointError(
            f"The checkpoint at {where} was written by a different model/method:\n"
            + "\n".join(diffs)
            + "\nUse a new --workdir, or restore the config it was trained "
            "with. Nothing in the workdir was changed."
        )

    @staticmethod
    def _check_shapes(metadata: Any, abstract_state: Any, where: str) -> None:
        saved, wanted = _shapes_by_path(metadata.tree), _shapes_by_path(abstract_state)
        if saved != wanted:
            diffs = sorted(
                f"  {key}: checkpoint {saved.get(key)} != config {wanted.get(key)}"
                for key in set(saved) | set(wanted)
                if saved.get(key) != wanted.get(key)
            )
            raise IncompatibleCheckpointError(
                f"The checkpoint at {where} does not fit the state this config builds:\n"
                + "\n".join(diffs[:10])
                + ("\n  ..." if len(diffs) > 10 else "")
                + "\nUse a new --workdir. Nothing in the workdir was changed."
            )

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and Orbax's start-up sweep of temporary directories, closes.

        Orbax's own ``close`` does not wait for that sweep (a private future, awaited only by
        the next save); a process that stops right after start-up (an error) would otherwise
        print its thread's traceback at interpreter shutdown.
        """
        await_sweep = getattr(self._manager, "_maybe_await_cleanup_tmp_directory", None)
        if await_sweep is not None:
            try:
                await_sweep()
            except Exception as error:  # noqa: BLE001  (a failed sweep loses nothing)
                logging.info("Orbax's sweep of temporary checkpoint directories failed: %s", error)
        self._manager.close()


def _path_entry(entry: Any) -> str:
    for attribute in ("key", "idx", "name"):
        if hasattr(entry, attribute):
            return str(getattr(entry, attribute))
    return str(entry)


def _shapes_by_path(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{"opt_state/1/trace/w": (shape, dtype)}``, alike for saved metadata and live trees."""
    return {
        "/".join(_path_entry(e) for e in path): (tuple(leaf.shape), str(leaf.dtype))
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def _all_processes_agree(ok: bool) -> bool:
    """True if ``ok`` holds on every process (a collective when there are several)."""
    if jax.process_count() == 1:
        return ok
    return bool(multihost_utils.process_allgather(jax.numpy.asarray(ok)).all())


def abstract_with_sharding(tree: Any, sharding: Any) -> Any:
    """``ShapeDtypeStruct``s of ``tree`` carrying ``sharding``, the target of a restore.

    ``sharding`` is one ``jax.sharding.Sharding`` for every leaf, or a tree of them matching
    ``tree`` (e.g. ``jaxssl.sharding.state_shardings``).
    """
    if isinstance(sharding, jax.sharding.Sharding):
        sharding = jax.tree.map(lambda _: sharding, tree)
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, sharding
    )
