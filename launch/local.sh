#!/usr/bin/env bash
# Runs N training processes on this machine, as N hosts of a pod would run them.
#
#   launch/local.sh N CONFIG WORKDIR [--config.field=value ...]   (CONFIG: byol[:preset] or a path)
#
# Each process sees LOCAL_DEVICES forced CPU devices (default 1), so N processes train on
# N x LOCAL_DEVICES devices with one global batch. The processes meet at a coordinator on
# a free localhost port. Output is prefixed with the process index. The script waits for
# all of them and exits with the first failure's status (stopping the others), or 0.
#
# Example (2 processes x 2 devices, the same global batch as 1 process x 4 devices):
#   LOCAL_DEVICES=2 launch/local.sh 2 byol runs/byol_2x2 --config.total_steps=50
set -uo pipefail

if [ "$#" -lt 3 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
num_processes=$1 config=$2 workdir=$3
shift 3
local_devices=${LOCAL_DEVICES:-1}
python=${PYTHON:-python}
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')

pids=()
stop_all() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null
  done
}
trap 'stop_all; exit 130' INT TERM

for ((i = 0; i < num_processes; i++)); do
  XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$local_devices" \
  JAX_PLATFORMS=cpu \
    "$python" -m cl_jax.main --config="$config" --workdir="$workdir" \
      --coordinator_address="localhost:$port" --num_processes="$num_processes" \
      --process_id="$i" "$@" > >(sed -u "s/^/[$i] /") 2> >(sed -u "s/^/[$i] /" >&2) &
  pids+=("$!")
done

status=0
live=("${pids[@]}")
while [ "${#live[@]}" -gt 0 ]; do
  finished=
  wait -n -p finished "${live[@]}"
  code=$?
  [ -z "$finished" ] && continue
  still=()
  for pid in "${live[@]}"; do
    [ "$pid" != "$finished" ] && still+=("$pid")
  done
  live=("${still[@]}")
  if [ "$code" -ne 0 ] && [ "$status" -eq 0 ]; then
    status=$code
    echo "launch/local.sh: process $finished exited with status $code; stopping the others." >&2
    stop_all
  fi
done
wait  # the output filters
exit "$status"
