#!/usr/bin/env bash
# One Mindscan pipeline over a Slurm job array: task I of N takes shard I/N of the inputs
# (DICOM by StudyInstanceUID, files by path), all tasks write into the same output folders on
# a shared file system, and the last step joins the manifest parts.
#
#   sbatch --array=0-7 docs/deploy/slurm-array.sh pipelines/dicom-to-jpg.yaml out/jpg
#   # when every task has finished (or chain it: sbatch --dependency=afterok:JOBID ...):
#   mindscan manifest merge out/jpg
#
# Each task is one process using the node's cores (workers: in the pipeline file).
#SBATCH --job-name=mindscan
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --output=mindscan-%A_%a.log
set -euo pipefail

pipeline=${1:?usage: slurm-array.sh PIPELINE.yaml [OUTPUT_FOLDER_TO_MERGE]}
merge_dir=${2:-}
mindscan=${MINDSCAN:-mindscan}

# `--shard auto` reads SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_COUNT.
status=0
"$mindscan" run --no-progress --shard auto "$pipeline" || status=$?

# The task that finishes last merges; merging is idempotent, so racing tasks do no harm, and
# a merge that finds a part missing (a task still running or failed) says so and is retried
# by the next task to finish.
if [[ -n "$merge_dir" ]]; then
    "$mindscan" manifest merge "$merge_dir" || echo "manifest merge: not every shard is done yet"
fi
exit "$status"
