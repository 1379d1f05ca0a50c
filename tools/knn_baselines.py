"""kNN top-1 baselines a trained model must beat, on the config's dataset.

    python tools/knn_baselines.py --config jaxssl/configs/simclr_cifar10.py:cpu [--out base.json]

* raw pixels: each image's pixels (with ``config.evals.patches``: its patches, concatenated)
  flattened, centred by their own mean, L2-normalised;
* random init: the config's backbone with freshly initialized weights (BatchNorm running
  statistics at their initial values, i.e. inference-mode identity normalization).
Both use the same kNN protocol as training (``config.evals.knn``: cosine, temperature-weighted,
train split as memory, test split as queries).
"""

import json

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config[:preset].", lock_config=True)
_OUT = flags.DEFINE_string("out", None, "Also write the JSON result to this file.")
flags.mark_flag_as_required("config")


def main(argv):
    del argv
    from jaxssl import platform

    platform.configure_program()  # the trainer's malloc and XLA:CPU settings
    import jax
    import jax.numpy as jnp

    from jaxssl import sharding, trainer
    from jaxssl.evals import knn

    config = _CONFIG.value
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    state = jax.jit(run.init_fn, out_shardings=sharding.replicated(mesh))(run.init_key)
    evaluator = trainer.make_knn_evaluator(config, run.model, mesh)
    result = {
        "protocol": f"kNN k={config.evals.knn.k} T={config.evals.knn.temperature} cosine, "
        f"{config.data.eval_train_split} -> {config.data.eval_test_split}"
    }
    result["random_init_knn_top1"] = evaluator.run(state)["knn/top1"]

    def raw_pixels(variables, images):  # uint8 pixels, centred per image
        del variables
        pixels = images.reshape(images.shape[0], -1).astype(jnp.float32)
        return pixels - jnp.mean(pixels, axis=-1, keepdims=True)

    pixel_evaluator = knn.KNNEvaluator(
        evaluator.make_memory_batches,
        evaluator.make_query_batches,
        mesh,
        ks=(config.evals.knn.k,),
        temperature=config.evals.knn.temperature,
        num_classes=config.data.num_classes,
        embed_fn=jax.jit(raw_pixels),
    )
    result["raw_pixels_knn_top1"] = pixel_evaluator.run(state)["knn/top1"]
    print(json.dumps(result))
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    app.run(main)
