"""Fine-tuning evaluation (jaxssl/evals/finetune.py): its augmentation, that it learns, that it
starts from the checkpoint's backbone, and the evaluator end to end."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.configs import rotnet_cifar10
from jaxssl.evals import finetune
from tests import helpers


def test_pad_crop_flip_returns_a_window_of_the_padded_image():
    images = np.random.default_rng(0).integers(1, 255, size=(6, 8, 8, 3)).astype(np.uint8)
    out = np.asarray(jax.jit(finetune.pad_crop_flip)(jax.random.key(1), images))
    assert out.shape == images.shape and out.dtype == np.uint8
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
    for n in range(6):
        windows = [
            w[:, ::-1] if flip else w
            for dy, dx, flip in itertools.product(range(9), range(9), (False, True))
            for w in [padded[n, dy : dy + 8, dx : dx + 8]]
        ]
        assert any(np.array_equal(out[n], w) for w in windows)


class _TinyBackbone(nn.Module):
    @nn.compact
    def __call__(self, images, train=True):
        x = nn.Conv(8, (3, 3))(images)
        x = nn.BatchNorm(use_running_average=not train)(x)
        return jnp.mean(nn.relu(x), axis=(1, 2))


def _coloured_images(rng, n):
    """Class c: channel c brighter than the others."""
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 120, size=(n, 8, 8, 3))
    images[np.arange(n), :, :, labels] += 120
    return images.astype(np.uint8), labels.astype(np.int32)


def test_fine_tuning_learns_and_starts_from_the_given_variables():
    rng = np.random.default_rng(2)
    images, labels = _coloured_images(rng, 256)
    test_images, test_labels = _coloured_images(rng, 128)
    classifier = finetune.Classifier(_TinyBackbone(), num_classes=3)
    variables = jax.jit(classifier.init, static_argnames="train")(
        jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False
    )
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    accuracy = finetune.make_accuracy_fn(classifier, mean, std, batch_size=50)
    # The zero-initialized head predicts class 0 for everything before fine-tuning.
    assert accuracy(variables, test_images, test_labels) == pytest.approx(np.mean(test_labels == 0))
    tune = finetune.make_fine_tune_fn(
        classifier, mean, std, steps=60, batch_size=32, weight_decay=5e-4
    )
    # Only the first 200 rows may be drawn: the padding rows carry a wrong label.
    padded_labels = labels.copy()
    padded_labels[200:] = (labels[200:] + 1) % 3
    tuned = tune(variables, images, padded_labels, 200, 0.1, jax.random.key(3))
    assert accuracy(tuned, test_images, test_labels) > 0.9
    # The input variables are not consumed (the step donates its own copies).
    assert jax.tree.all(jax.tree.map(lambda x: np.isfinite(np.asarray(x)).all(), variables))


@pytest.mark.slow  # trains a smoke run, then fine-tunes it through the CLI (~2 min)
def test_finetune_evaluator_through_the_cli(tmp_path):
    workdir = str(tmp_path / "rotnet")
    train = helpers.run_jaxssl(
        "train", "--config", f"{rotnet_cifar10.__file__}:smoke", "--workdir", workdir,
        "--config.train.progress_bar=False",
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    evaluation = helpers.run_jaxssl(
        "eval", "--workdir", workdir, "--config.evals.run=('finetune',)",
        "--config.evals.finetune.label_fractions=(0.1,1.0)",
        "--config.evals.finetune.steps=3", "--config.evals.finetune.batch_size=16",
    )  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    for name in ("top1_frac0.1", "top1_frac1"):
        assert f"| finetune | {name} |" in evaluation.stdout, evaluation.stdout
    assert "chosen on the subset's held-out 10%" in evaluation.stdout
