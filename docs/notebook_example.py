"""jaxssl from Python: build a method's state and jitted train step, train it on your own arrays,
evaluate its features with kNN. Runs top to bottom in about a minute on a laptop CPU:

    python docs/notebook_example.py

Each ``# %%`` cell is a notebook cell (Jupyter, VS Code). docs/api.md explains the API;
tests/test_api.py runs this file.
"""

# %% A config: any run config of jaxssl/configs, here SimCLR's tiny `smoke` preset.
import jax
import numpy as np

from jaxssl import api
from jaxssl.configs import simclr_cifar10
from jaxssl.data import fake

config = simclr_cifar10.get_config("smoke")  # a width-4 ResNet-18, batch 32
print(config.method)

# %% Your arrays: uint8 images [N, H, W, 3] and int labels [N]. Here jaxssl's fake CIFAR-like
# data (ten colour-coded classes); CIFAR-10 itself from TFDS or numpy works the same way.
train_images, train_labels = fake.make_examples("train", 512)
test_images, test_labels = fake.make_examples("test", 256)
print(train_images.shape, train_images.dtype, test_images.shape)

# %% The method, its state and its jitted train step, exactly as `jaxssl train` builds them.
run = api.build(config)
state = run.init_state()  # a TrainState pytree: params, batch_stats, opt_state, ...
params_before = jax.device_get(state.params)  # the step donates its state: keep a copy
print(run.model.__class__.__name__, "on", run.mesh.devices.size, "device(s)")

# %% Train: a batch is the views of your images (random resized crops and flips, cut on the
# host); the step adds the colour augmentation, computes the loss and updates the state.
batch_size = config.train.batch_size
rng = np.random.default_rng(0)
losses = []
for step in range(8):
    rows = rng.choice(len(train_images), batch_size, replace=False)
    batch = api.make_batch(
        train_images[rows], train_labels[rows], config.data, index=rows, epoch=step
    )
    state, metrics = run.train_step(state, batch)
    losses.append(float(metrics["train/loss"]))
    print(f"step {step + 1}: loss {losses[-1]:.4f}, probe top-1 {float(metrics['probe/top1']):.2f}")

# %% How far did training move the parameters? (State is a pytree: jax.tree works on it.)
moved = jax.tree.map(
    lambda a, b: float(np.abs(np.asarray(a) - b).max()), state.params, params_before
)
print("largest parameter change:", max(jax.tree.leaves(moved)))

# %% Evaluate: backbone features of unaugmented images, then weighted kNN (cosine, T = 0.1).
embed_fn = api.make_embed_fn(run)
train_features = embed_fn(state, train_images)["backbone"]  # [512, D]
test_features = embed_fn(state, test_images)["backbone"]  # [256, D]
top1 = api.knn_top1(train_features, train_labels, test_features, test_labels, k=20)
print(f"kNN top-1 (k=20) of {train_features.shape[1]}-d features: {top1:.3f}")
