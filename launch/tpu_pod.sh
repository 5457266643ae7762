#!/bin/bash
# Cloud TPU VM pod (e.g. v4-32): run `prn-jax train` on every host at once. On a TPU VM
# prn_jax.distributed lets JAX detect the pod (jax.distributed.initialize() without arguments).
#
#   launch/tpu_pod.sh TPU_NAME ZONE --config paper --workdir gs://BUCKET/runs/paper
#
# The work directory must be shared by all hosts (a gs:// bucket or an NFS mount): Orbax writes
# each checkpoint from all hosts together. Set REPO_DIR if the checkout is not ~/prn-jax on the
# hosts, and PROJECT for a non-default gcloud project. Install first, on all hosts:
#   gcloud compute tpus tpu-vm ssh TPU_NAME --zone ZONE --worker=all \
#     --command 'cd ~/prn-jax && pip install -e . "jax[tpu]"'
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 TPU_NAME ZONE [prn-jax train arguments...]" >&2
  exit 2
fi
TPU_NAME=$1
ZONE=$2
shift 2
REPO_DIR=${REPO_DIR:-~/prn-jax}
ARGS=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" ${PROJECT:+--project "$PROJECT"} --worker=all \
  --command "cd $REPO_DIR && prn-jax train$ARGS"
