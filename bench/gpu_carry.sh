#!/usr/bin/env bash
# Lays out .carry/ (git-ignored) exactly as the GPU machine receives it, checks its size and prints
# the one command to pass to the device tool (with carry: [".carry"]). See README "On a GPU".
#
#   bash bench/gpu_carry.sh            # SHARED defaults to ../shared, else /work/shared
#
# .carry/wheels            hydra-core, omegaconf, antlr4, datasets, dill, multiprocess (pure Python)
# .carry/minilm-fp16       all-MiniLM-L6-v2 with fp16 weights (45 MB)
# .carry/glue/{RTE,SST-2}  the GLUE tasks the script trains on; SST-2's train split cut to its first
#                          20,000 rows (the script draws at most 9,600), which keeps 2.6 MiB free
# .carry/roberta-tokenizer roberta-base vocab.json + merges.txt (the random-weight shapes' tokenizer)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-$( [[ -d ../shared ]] && echo ../shared || echo /work/shared )}
LIMIT_MIB=64
BUDGET_MIB=${CARRY_BUDGET_MIB:-56}  # "well under" the limit: room for the checkout itself

git check-ignore -q .carry/ || { echo ".carry/ is not git-ignored: add /.carry/ to .gitignore" >&2; exit 1; }
rm -rf .carry
mkdir -p .carry/glue
cp -r "$SHARED/device/wheels" "$SHARED/device/minilm-fp16" .carry/
cp -r "$SHARED/data/glue/RTE" "$SHARED/data/glue/SST-2" .carry/glue/
cp -r "$SHARED/data/tokenizers/roberta-base" .carry/roberta-tokenizer
# The GLUE test splits are never read by the script.
rm -f .carry/glue/*/test.tsv
chmod -R u+w .carry
head -n 20001 "$SHARED/data/glue/SST-2/train.tsv" >.carry/glue/SST-2/train.tsv

carry_kib=$(du -sk .carry | cut -f1)
# The device copies the tracked files and the untracked ones git does not ignore.
tree_kib=$(git ls-files -z --cached --others --exclude-standard | du -ck --files0-from=- | tail -1 | cut -f1)
echo "carry: .carry/ $((carry_kib / 1024)) MiB + checkout $((tree_kib / 1024)) MiB (limit $LIMIT_MIB MiB a call)"
if (( carry_kib + tree_kib > BUDGET_MIB * 1024 )); then
  echo "too large: keep the carry under $BUDGET_MIB MiB" >&2
  exit 1
fi

CMD='python3 -m pip install -q --no-index --no-deps --target /tmp/site .carry/wheels/*.whl && export PYTHONPATH=$PWD/src:/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 && PYTHONUNBUFFERED=1 bash bench/gpu.sh $OUT'
(( ${#CMD} <= 2000 )) || { echo "device command longer than 2000 characters" >&2; exit 1; }
echo
echo "device tool: carry [\".carry\"], timeout_s 600, command:"
echo "$CMD"
