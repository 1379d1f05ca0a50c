"""A thin Orbax ``CheckpointManager`` wrapper: the TrainState plus the config that made it."""

import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

# Config sections that decide the shapes (and meaning) of the saved state. A checkpoint written
# under different values cannot be resumed by this config.
_STATE_DEFINING = ("model", "method")


class IncompatibleCheckpointError(ValueError):
    """The workdir holds a checkpoint of a different model than the config describes."""


def _defining(config: dict) -> dict:
    return {k: config.get(k) for k in _STATE_DEFINING}


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
        self._manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            item_names=("state", "config"),
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
        """
        step = self._manager.latest_step() if step is None else step
        where = os.path.join(self.directory, str(step))
        saved = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        saved_defining, defining = _defining(saved["config"]), _defining(self._config)
        if saved_defining != defining:
            diffs = [
                f"  {section}.{key}: checkpoint {saved_defining[section].get(key)!r} != config "
                f"{defining[section].get(key)!r}"
                for section in _STATE_DEFINING
                for key in sorted(set(saved_defining[section] or {}) | set(defining[section]))
                if (saved_defining[section] or {}).get(key) != defining[section].get(key)
            ]
            raise IncompatibleCheckpointError(
                f"The checkpoint at {where} was written by a different model/method:\n"
                + "\n".join(diffs)
                + "\nUse a new --workdir, or restore the config it was trained "
                "with. Nothing in the workdir was changed."
            )
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
            )
        except (ValueError, KeyError, TypeError) as e:
            raise IncompatibleCheckpointError(
                f"The checkpoint at {where} does not fit the state this config builds ({e}). "
                "Use a new --workdir. Nothing in the workdir was changed."
            ) from e
        return restored["state"]

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def abstract_with_sharding(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """``ShapeDtypeStruct``s of ``tree`` carrying ``sharding``, the target of a restore."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
