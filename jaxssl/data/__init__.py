"""Input pipelines: tf.data on the host (sources, crops); color.py is JAX, for the device."""
