"""Every test runs on 8 fake CPU devices, so sharding code runs without an accelerator."""

import os

from jaxssl import platform

# Must happen before jax is imported anywhere.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
platform.configure_xla_cpu()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
