"""Host-side input pipelines (tf.data; no JAX imports except device.py)."""
