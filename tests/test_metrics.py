"""Metric writing: TensorBoard image summaries of the evaluation figures, optional wandb."""

import glob
import json
import os
import sys
import types

import pytest
import tensorflow as tf

from jaxssl import errors, evaluate, metrics, saved_config, trainer
from jaxssl.configs import simclr_cifar10
from tests import helpers


def _tensorboard_images(workdir: str) -> dict[str, list[int]]:
    """``{tag: [steps]}`` of the image summaries in ``WORKDIR/tensorboard``."""
    found = {}
    for path in glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    found.setdefault(value.tag, []).append(event.step)
    return found


@pytest.mark.slow  # ~30 s: a training run with its evaluation figures
def test_eval_figures_go_to_tensorboard_as_images_at_their_step(tmp_path):
    workdir = str(tmp_path)
    helpers.save_init_checkpoint(workdir, simclr_cifar10.get_config("smoke"), step=2)
    config = saved_config.load(workdir)
    config.evals.run = ("plots",)
    report = evaluate.evaluate(config, workdir)
    figures = report["details"]["plots"]["files"]
    assert set(figures) == {"curves", "spectrum", "embedding", "retrieval"}
    assert _tensorboard_images(workdir) == {f"eval/{name}": [2] for name in figures}


def test_images_are_the_pngs(tmp_path):
    pixels = tf.cast(tf.reshape(tf.range(4 * 6 * 3) * 3, [4, 6, 3]), tf.uint8)
    path = str(tmp_path / "figure.png")
    tf.io.write_file(path, tf.io.encode_png(pixels))
    metrics.write_images(str(tmp_path), 7, {"eval/figure": path})
    (events,) = glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
    (value,) = [
        (event.step, v)
        for event in tf.compat.v1.train.summary_iterator(events)
        for v in event.summary.value
    ]
    step, value = value
    # Summary v2 images: a string tensor [width, height, encoded PNG].
    width, height, png = tf.make_ndarray(value.tensor)
    assert (step, int(width), int(height)) == (7, 6, 4)
    assert (tf.io.decode_png(png).numpy() == pixels.numpy()).all()


def test_wandb_on_without_wandb_installed_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    config = helpers.smoke_run_config(wandb=True)
    with pytest.raises(errors.UserError, match="pip install wandb"):
        metrics.MetricWriter(str(tmp_path / "writer"), config=config)
    with pytest.raises(errors.UserError, match="pip install wandb"):
        trainer.train_and_evaluate(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")  # failed before writing anything
    assert metrics.import_wandb(helpers.smoke_run_config().train) is None  # off by default


class _FakeWandb(types.ModuleType):
    """A stand-in ``wandb`` module: records ``init`` arguments and every run's ``log`` calls."""

    def __init__(self):
        super().__init__("wandb")
        self.inits, self.logged, self.finished = [], [], 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        fake = self

        class Run:
            def log(self, data, step):
                fake.logged.append({"step": step, **data})

            def finish(self):
                fake.finished += 1

        return Run()


@pytest.mark.slow  # ~20 s; TensorBoard logging stays in the default lane
def test_wandb_logs_the_scalars_training_writes(tmp_path, monkeypatch):
    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    workdir = str(tmp_path)
    config = helpers.smoke_run_config(steps=2, wandb=True, wandb_project="ssl-tests")
    trainer.train_and_evaluate(config, workdir)
    (init,) = fake.inits
    assert init["project"] == "ssl-tests" and init["resume"] == "allow"
    assert init["config"]["method"]["name"] == "simclr"
    with open(os.path.join(workdir, metrics.WANDB_ID_FILE)) as f:
        assert init["id"] == f.read().strip()
    # The same records as metrics.jsonl (which writes NaN as null).
    expected = helpers.read_metrics(workdir)
    assert [r["step"] for r in fake.logged] == [1, 2, 2]  # two train logs, the final eval
    assert json.loads(json.dumps(fake.logged).replace("NaN", "null")) == expected
    assert fake.finished == 1

    # A resumed run logs into the same wandb run.
    metrics.MetricWriter(workdir, resume_step=2, config=config).close()
    assert fake.inits[1]["id"] == init["id"]
