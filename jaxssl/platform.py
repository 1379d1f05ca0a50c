"""Process-level XLA settings that must be in place before JAX creates its backends."""

import os

# XLA:CPU (jaxlib 0.10) hands each convolution to YNNPACK as an "individual convolution"
# fusion by default; on 2-core x86 hosts that path is 1.7-2.7x slower for ResNet training
# steps than XLA's own convolution emitter (tools/benchmark.py, README "Benchmarks").
# Removing it from the fusion set keeps YNNPACK for everything else. The flag only concerns
# the CPU backend; TPU and GPU compilers ignore it.
CPU_XLA_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)


def configure_xla_cpu() -> None:
    """Appends ``CPU_XLA_FLAGS`` to ``$XLA_FLAGS`` unless the user already set those flags.

    Call before the first JAX computation (backends read ``XLA_FLAGS`` once, at creation).
    """
    current = os.environ.get("XLA_FLAGS", "")
    extra = [f for f in CPU_XLA_FLAGS if f.split("=", 1)[0] not in current]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([current, *extra]).strip()
