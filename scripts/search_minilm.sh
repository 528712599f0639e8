#!/usr/bin/env bash
# The recipe search behind conf/recipe/minilm/<task>.yaml (issue 13): one seed, learning rate x
# epochs per task and variant, scored on a dev split carved from train (data.dev_from_train, 10%),
# so the dev numbers reported with the recipes were not tuned on.
#   bash scripts/search_minilm.sh [OUT_DIR] [TASK ...]
# Finished jobs are skipped when the script is run again (sweep resume), so it can be stopped.
set -euo pipefail
out=${1:-multirun/search_minilm}
shift || true
tasks=${*:-cola stsb mrpc rte sst2}
python=${PYTHON:-python}
here=$(cd "$(dirname "$0")/.." && pwd)

run() {  # run <task> <variant> <learning rates> <epochs> [overrides...]
  local task=$1 variant=$2 lrs=$3 epochs=$4
  shift 4
  local lora=() again=() dir="$out/$task-$variant-e$epochs"
  [ "$variant" = full ] && lora=(lora=none)
  [ -d "$dir" ] && again=(resume=true)  # a second pass skips finished jobs, resumes killed ones
  echo "== $(date -u +%H:%M:%S) $task $variant lr=$lrs epochs=$epochs"
  "$python" "$here/train.py" -m "task=$task" "${lora[@]}" "optimizer.lr=$lrs" "trainer.max_epochs=$epochs" \
    data.dev_from_train=true +task.val_fraction=0.1 trainer.val_check_interval=1.0 seed=0 \
    "hydra.sweep.dir=$dir" "${again[@]}" "$@"
}

for task in $tasks; do
  case $task in
    sst2) rows=(data.max_train_rows=20000); epochs_lora=1; epochs_full=1 ;;
    *) rows=(); epochs_lora=5; epochs_full=3 ;;
  esac
  run "$task" lora 5e-4,1e-3,2e-3 "$epochs_lora" "${rows[@]}"
  run "$task" full 2e-5,5e-5,1e-4 "$epochs_full" "${rows[@]}"
done
