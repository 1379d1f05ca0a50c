"""A deterministic fake image dataset with the element spec of `tfds.load_split`.

Ten classes of 32x32 RGB images; each class has its own colour and stripe
orientation, with per-example phase, brightness and pixel noise, so a small model
can learn something in a few steps and the smoke tests need no download.
"""

import numpy as np
import tensorflow as tf

NUM_CLASSES = 10
IMAGE_SIZE = 32
# Default sizes; the data config overrides them (`fake_train_examples`, ...).
NUM_EXAMPLES = {"train": 512, "test": 256}
_SPLIT_SEEDS = {"train": 0, "test": 1}

# One saturated colour per class, spread around the hue circle.
_PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [128, 128, 0],
        [0, 0, 128],
    ],
    np.float32,
)


def make_examples(split: str, num_examples: int) -> tuple[np.ndarray, np.ndarray]:
    """All examples of a fake split, the same on every process and every call.

    Args:
      split: ``"train"`` or ``"test"``.
      num_examples: number of examples in the split.

    Returns:
      ``(images, labels)``: uint8 ``[N, 32, 32, 3]`` and int32 ``[N]``, classes balanced.
    """
    if split not in _SPLIT_SEEDS:
        raise ValueError(f"Fake data has splits {sorted(_SPLIT_SEEDS)}, got {split!r}.")
    rng = np.random.default_rng(_SPLIT_SEEDS[split])
    labels = rng.permutation(np.arange(num_examples) % NUM_CLASSES).astype(np.int32)
    angle = labels * (np.pi / NUM_CLASSES)  # stripe orientation encodes the class too
    phase = rng.uniform(0, 2 * np.pi, num_examples)
    rows, cols = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
    along = np.cos(angle)[:, None, None] * cols + np.sin(angle)[:, None, None] * rows
    stripes = 0.5 + 0.5 * np.sin(along * (2 * np.pi / 8) + phase[:, None, None])  # [N, H, W]
    brightness = rng.uniform(0.6, 1.0, num_examples)[:, None, None, None]
    images = _PALETTE[labels][:, None, None, :] * (0.4 + 0.6 * stripes[..., None]) * brightness
    images += rng.normal(0, 16, images.shape)
    return np.clip(np.round(images), 0, 255).astype(np.uint8), labels


def part_bounds(num_examples: int, process_index: int, process_count: int) -> tuple[int, int]:
    """``[start, end)`` of a process's part, split as ``tfds.even_splits`` does: the first
    ``num_examples % process_count`` parts get one extra example."""
    size, extra = divmod(num_examples, process_count)
    start = process_index * size + min(process_index, extra)
    return start, start + size + (process_index < extra)


def load_split(
    split: str, process_index: int, process_count: int, num_examples: int | None = None
) -> tuple[tf.data.Dataset, int]:
    """This process's contiguous part of a fake split, in order.

    Args:
      split: ``"train"`` or ``"test"``.
      process_index: this process's index.
      process_count: number of processes.
      num_examples: size of the whole split; defaults to ``NUM_EXAMPLES[split]``.

    Returns:
      ``(dataset, n)``: elements ``{"image": uint8 [32, 32, 3], "label": int32,
      "index": int64}`` with ``index`` the position in the whole split, and the number
      of examples in this part.
    """
    if num_examples is None:
        num_examples = NUM_EXAMPLES.get(split, 0)
    images, labels = make_examples(split, num_examples)
    start, end = part_bounds(num_examples, process_index, process_count)
    dataset = tf.data.Dataset.from_tensor_slices(
        {
            "image": images[start:end],
            "label": labels[start:end],
            "index": np.arange(start, end, dtype=np.int64),
        }
    )
    return dataset, end - start
