#!/usr/bin/env bash
# Cloud TPU VM pod slice: the same command on every host; JAX finds its peers by itself.
#   launch/tpu_vm.sh TPU_NAME ZONE jaxssl/configs/simclr_cifar10.py gs://bucket/runs/simclr_c10
# Data: export TFDS_DATA_DIR=gs://bucket/tensorflow_datasets on the hosts (TFDS reads GCS).
set -euo pipefail
tpu="$1"; zone="$2"; config="$3"; workdir="$4"; shift 4
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command "
  cd jaxssl && TFDS_DATA_DIR=\${TFDS_DATA_DIR:?set it on the hosts} \
  python -m jaxssl.train --distributed --config $config --workdir $workdir $*"
