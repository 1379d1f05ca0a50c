"""Process-level settings that must be in place before JAX creates its backends."""

import glob
import importlib.util
import os
import sys

# XLA:CPU (jaxlib 0.10) hands each convolution to YNNPACK as an "individual convolution"
# fusion by default; on 2-core x86 hosts that path is 1.7-2.7x slower for ResNet training
# steps than XLA's own convolution emitter (tools/benchmark.py, docs/benchmarks.md).
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


# glibc's malloc hands every buffer above its mmap threshold (adaptive, at most 32 MiB) back
# to the kernel on free and trims the heap top, so each train step of XLA:CPU (activations of
# hundreds of MiB, allocated afresh every step) page-faults and zero-fills its working set
# again. These tunables made a ViT-Tiny/4 step 1.88x faster, a full-width ResNet-18 step
# 1.13x and the VICReg `cpu` preset's 1.24x on a 2-core host (docs/benchmarks.md). They
# keep freed memory in the process (threshold at its 32 MiB ceiling, no trimming) and back
# larger blocks with transparent huge pages; the process keeps its peak footprint instead of
# returning it between steps. glibc reads them only at start-up; other C libraries ignore
# the variable.
MALLOC_TUNABLES = (
    "glibc.malloc.mmap_threshold=33554432"
    ":glibc.malloc.trim_threshold=17179869184"
    ":glibc.malloc.hugetlb=1"
)
# Set to 0 to keep the C library's defaults (no re-exec).
MALLOC_OPT_OUT = "JAXSSL_MALLOC_TUNING"


def exec_with_malloc_tunables() -> None:
    """Restarts this process (same PID, argv and environment) with ``MALLOC_TUNABLES``.

    Call first thing in a program's own entry point (``__main__``, a console script), never
    from library code: it replaces the calling process, a notebook kernel included. Does
    nothing if ``GLIBC_TUNABLES`` is already set (by the user, or by the restart itself), if
    ``$JAXSSL_MALLOC_TUNING`` is ``0``, or off Linux.
    """
    if (
        not sys.platform.startswith("linux")
        or "GLIBC_TUNABLES" in os.environ
        or os.environ.get(MALLOC_OPT_OUT) == "0"
    ):
        return
    os.environ["GLIBC_TUNABLES"] = MALLOC_TUNABLES
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def configure_program() -> None:
    """Both settings, for a program's own entry point (a tool's ``main``): the malloc restart,
    then ``configure_xla_cpu``."""
    exec_with_malloc_tunables()
    configure_xla_cpu()


def _accelerator_attached() -> bool:
    """Whether this host shows a TPU (Google PCI device), an NVIDIA or an AMD GPU."""
    for vendor in glob.glob("/sys/bus/pci/devices/*/vendor"):
        try:
            with open(vendor) as f:
                if f.read().strip() == "0x1ae0":  # Google: TPU chips
                    return True
        except OSError:
            continue
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/kfd")


def quiet_startup() -> None:
    """Keeps TensorFlow's C++ start-up logs, and those of an idle libtpu, off the console.

    For jaxssl's own commands only (a user's program importing jaxssl keeps its settings):
    ``TF_CPP_MIN_LOG_LEVEL=2`` unless set, and, on a Linux host with libtpu installed (the
    ``tpu`` extra, for ``jaxssl compile``) but no TPU or GPU attached, ``JAX_PLATFORMS=cpu``
    unless set: otherwise JAX probes libtpu at start-up, which prints a dozen lines of errors
    about TPU host names before JAX falls back to the CPU.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if (
        "JAX_PLATFORMS" not in os.environ
        and sys.platform.startswith("linux")
        and importlib.util.find_spec("libtpu") is not None
        and not _accelerator_attached()
    ):
        os.environ["JAX_PLATFORMS"] = "cpu"


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow with file descriptor 2 pointed at /dev/null, then restores it.

    TensorFlow 2.21 prints absl and oneDNN notices from C++ while it loads, whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says. jaxssl's train and eval commands import it this way first;
    an import that fails still raises, with stderr back in place for its traceback.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        import tensorflow  # noqa: F401, PLC0415
    finally:
        os.dup2(saved, 2)
        os.close(saved)
