#!/usr/bin/env bash
# Multi-node DTM on Slurm: one `accelerate launch` per node, DDP over all GPUs of all nodes.
#
#   sbatch --nodes=4 --gpus-per-node=2 scripts/slurm_dtm.sh configs/countdown-llada.yaml [key=value ...]
#
# Each node runs GPUS_PER_NODE processes; rank 0 of the first node is the rendezvous point. Prompts, rollouts and
# micro-batches are sharded over all ranks; only the global main process writes checkpoints and logs. Resume a
# preempted job by adding --resume (the latest checkpoint in output_dir is used by every rank).
#SBATCH --job-name=dtm
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --time=48:00:00
#SBATCH --output=logs/%x-%j.out
set -euo pipefail

CONFIG=${1:?usage: sbatch scripts/slurm_dtm.sh CONFIG.yaml [key=value ...]}
shift
EXTRA=$(printf ' %q' "$@")
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-configs/accelerate/multi_node_ddp.yaml}
GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-2}}
NUM_NODES=${SLURM_NNODES:?run under sbatch/srun}
# The whole host list first, then its first line: `scontrol ... | head -n 1` lets head exit before scontrol has written
# a long list, and the SIGPIPE that ends scontrol then fails the job under pipefail.
NODES=$(scontrol show hostnames "$SLURM_JOB_NODELIST")
MAIN_IP=${NODES%%$'\n'*}
MAIN_PORT=${MAIN_PORT:-29500}
mkdir -p logs

export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}

# SLURM_NODEID is set per node inside srun, so machine_rank must be expanded there, not here.
srun --kill-on-bad-exit=1 bash -c "accelerate launch \
  --config_file '$ACCELERATE_CONFIG' \
  --num_machines $NUM_NODES \
  --num_processes $((NUM_NODES * GPUS_PER_NODE)) \
  --machine_rank \$SLURM_NODEID \
  --main_process_ip $MAIN_IP \
  --main_process_port $MAIN_PORT \
  -m dtm.cli train --config '$CONFIG'$EXTRA"
