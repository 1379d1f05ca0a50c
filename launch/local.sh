#!/usr/bin/env bash
# Single-process run on this machine (CPU, or the local GPUs/TPU chips).
#   launch/local.sh jaxssl/configs/simclr_cifar10.py:cpu /tmp/simclr_cpu [--config.x=y ...]
set -euo pipefail
config="$1"; workdir="$2"; shift 2
# XLA:CPU: one intra-op thread pool over all cores; tf.data shares them.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec python -m jaxssl.train --config "$config" --workdir "$workdir" "$@"
