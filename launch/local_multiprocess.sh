#!/usr/bin/env bash
# Simulates a multi-host run on one machine: N processes joined by jax.distributed on
# localhost, each owning D CPU devices (CPU collectives: gloo). The same code path as a pod.
#   launch/local_multiprocess.sh 2 4 jaxssl/configs/simclr_cifar10.py:smoke /tmp/mp_smoke [--config.x=y ...]
# Every process's output goes to WORKDIR/logs/process_<i>.log; process 0's is also shown.
set -euo pipefail
num_processes="$1"; devices="$2"; config="$3"; workdir="$4"; shift 4
port="${JAXSSL_COORDINATOR_PORT:-$((20000 + RANDOM % 20000))}"
export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${devices}"
export JAX_PLATFORMS=cpu
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
mkdir -p "$workdir/logs"
pids=()
for ((i = 0; i < num_processes; i++)); do
  python -m jaxssl.train --config "$config" --workdir "$workdir" --distributed \
    --coordinator_address "127.0.0.1:${port}" --num_processes "$num_processes" \
    --process_id "$i" "$@" >"$workdir/logs/process_$i.log" 2>&1 &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
tail -n +1 -f "$workdir/logs/process_0.log" --pid "${pids[0]}" &
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit "$status"
