#!/usr/bin/env bash
# A Cloud TPU pod slice: create it, install cl_jax on every worker, run the same training
# command on all workers at once, and delete the slice. Each worker is one JAX process;
# jax.distributed finds the others by itself (cl_jax.main --distributed=auto).
#
#   launch/tpu_pod.sh create                      # the TPU VM slice
#   launch/tpu_pod.sh setup                       # copy this checkout, install it (all workers)
#   launch/tpu_pod.sh run CONFIG WORKDIR [--config.field=value ...]
#   launch/tpu_pod.sh ssh 'COMMAND'               # any command on all workers
#   launch/tpu_pod.sh delete
#
# Settings (environment): TPU_NAME (default cl-jax), ZONE (us-central2-b),
# ACCELERATOR_TYPE (v4-32: 16 chips, 4 workers), TPU_VERSION (tpu-ubuntu2204-base),
# PROJECT (gcloud's default project if unset). WORKDIR must be a path every worker can
# write and read back, e.g. gs://bucket/runs/byol (Orbax and TensorBoard write to GCS
# directly); data: TFDS on GCS via --config.data.data_dir=gs://bucket/tensorflow_datasets.
#
# Example: BYOL on ImageNet, batch 4096 over a v4-32:
#   launch/tpu_pod.sh create && launch/tpu_pod.sh setup
#   launch/tpu_pod.sh run byol:imagenet gs://my-bucket/runs/byol \
#       --config.data.data_dir=gs://my-bucket/tensorflow_datasets
#   launch/tpu_pod.sh delete
# The run survives preemption of the slice: re-create it and rerun the same 'run' command;
# training resumes from the last checkpoint in WORKDIR.
set -euo pipefail

TPU_NAME=${TPU_NAME:-cl-jax}
ZONE=${ZONE:-us-central2-b}
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-v4-32}
TPU_VERSION=${TPU_VERSION:-tpu-ubuntu2204-base}
project=(${PROJECT:+--project="$PROJECT"})
repo_dir=cl_jax  # on each worker, under the home directory

all_workers() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" "${project[@]}" --worker=all \
    --command="$1"
}

command=${1:-}
shift || true
case "$command" in
  create)
    gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" "${project[@]}" \
      --accelerator-type="$ACCELERATOR_TYPE" --version="$TPU_VERSION"
    ;;
  setup)
    tar czf /tmp/cl_jax_src.tgz --exclude=.git --exclude='.*venv*' --exclude=runs \
      -C "$(dirname "$0")/.." .
    gcloud compute tpus tpu-vm scp /tmp/cl_jax_src.tgz "$TPU_NAME":cl_jax_src.tgz \
      --zone="$ZONE" "${project[@]}" --worker=all
    all_workers "mkdir -p $repo_dir && tar xzf cl_jax_src.tgz -C $repo_dir && \
      python3 -m venv ~/venv && ~/venv/bin/pip install -q -U pip && \
      ~/venv/bin/pip install -q 'jax[tpu]' -e $repo_dir"
    ;;
  run)
    if [ "$#" -lt 2 ]; then
      echo "usage: $0 run CONFIG WORKDIR [--config.field=value ...]" >&2
      exit 2
    fi
    config=$1 workdir=$2
    shift 2
    printf -v overrides ' %q' "$@"
    # Output of every worker streams back; only worker 0 prints progress and writes logs.
    all_workers "cd $repo_dir && ~/venv/bin/python -m cl_jax.main --config=$config \
      --workdir=$workdir$overrides"
    ;;
  ssh)
    all_workers "$1"
    ;;
  delete)
    gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE" "${project[@]}" --quiet
    ;;
  *)
    sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
