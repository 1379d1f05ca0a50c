"""kNN top-1 baselines a trained model must beat, on the config's dataset.

    python tools/knn_baselines.py --config jaxssl/configs/simclr_cifar10.py:cpu [--out base.json]
    python tools/knn_baselines.py --config jaxssl/configs/mae_cifar10.py:cpu --linear

``--linear`` adds the linear probe (`jaxssl eval`'s protocol, ``config.evals.linear``) of the
randomly initialized backbone, the baseline of methods reported by linear probe (MAE, I-JEPA).

* raw pixels: each image flattened, centred by its own mean, L2-normalised;
* random init: the config's backbone with freshly initialized weights (BatchNorm running
  statistics at their initial values, i.e. inference-mode identity normalization).
Both use the same kNN protocol as training (``config.evals.knn``: cosine, temperature-weighted,
train split as memory, test split as queries).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config[:preset].", lock_config=True)
_OUT = flags.DEFINE_string("out", None, "Also write the JSON result to this file.")
_LINEAR = flags.DEFINE_bool("linear", False, "Also the linear probe of the random init.")
flags.mark_flag_as_required("config")


def main(argv):
    del argv
    from jaxssl import platform

    platform.configure_program()  # the trainer's malloc and XLA:CPU settings
    import jax
    import jax.numpy as jnp

    from jaxssl import sharding, trainer
    from jaxssl.evals import features, knn, linear

    config = _CONFIG.value
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    extractor = features.Extractor(config, run.model, mesh)
    result = {
        "protocol": f"kNN k={config.evals.knn.k} T={config.evals.knn.temperature} cosine, "
        f"{config.data.eval_train_split} -> {config.data.eval_test_split}"
    }
    init = run.init_state()
    result["random_init_knn_top1"] = trainer.evaluate_state(extractor, init)["knn/top1"]
    if _LINEAR.value:
        init_context = extractor.extract({"params": init.params, "batch_stats": init.batch_stats})
        probe = linear.run(init_context).metrics
        result["random_init_linear_top1"] = probe["linear/top1"]

    def raw_pixels(variables, images):  # uint8 pixels in [0, 1], centred per image
        del variables
        pixels = images.reshape(images.shape[0], -1).astype(jnp.float32) / 255.0
        return {"backbone": pixels - jnp.mean(pixels, axis=-1, keepdims=True)}

    pixels_fn = jax.jit(raw_pixels)
    context = features.Context(
        config=config,
        mesh=mesh,
        model=run.model,
        variables={},
        train=features.extract(pixels_fn, None, extractor.make_train_batches(), mesh),
        test=features.extract(pixels_fn, None, extractor.make_test_batches(), mesh),
        make_train_batches=extractor.make_train_batches,
        make_test_batches=extractor.make_test_batches,
    )
    metrics = knn.run(context).metrics
    result["raw_pixels_knn_top1"] = metrics[f"knn/top1_k{config.evals.knn.k}"]
    print(json.dumps(result))
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    app.run(main)
