#!/usr/bin/env bash
# GPU checks (issue 17), in priority order, each under its own time cap (about 7.5 minutes in all):
#   1. 16-mixed and bf16-mixed (and bf16 frozen weights) against 32-true: MiniLM LoRA on real SST-2
#   2. deterministic=true twice: identical metrics and adapter bytes
#   3. throughput, peak memory and MFU, ours vs Trainer + PEFT (best and default padding), real
#      roberta-base (batch 16) and roberta-large (batch 8) shapes, random weights, bf16
#   4. DeBERTa-v2-xxlarge (random weights, bf16 frozen, LoRA r=16, batch 8 x 256) with and without
#      gradient checkpointing
#   5. QLoRA (model.quantize=4bit) on that shape, against 4.'s bf16 frozen weights
# Each section writes OUT/<nn>-<section>.json and .md as soon as it ends; OUT/gpu.md gathers them.
# A section that runs past its cap is cut, and reports what it measured by then; the time a section
# leaves unused goes to the next ones, so the whole never exceeds the sum of the caps.
#
#   bash bench/gpu.sh [OUT_DIR]                  # one CUDA GPU; see bench/gpu_carry.sh for the device tool
#   GPU_DRY_RUN=1 bash bench/gpu.sh /tmp/gpu_dry # CPU: every section with tiny sizes, same inputs
#
# Inputs (defaults: the layout bench/gpu_carry.sh makes in .carry/):
#   GLUE_DIR     GLUE data with SST-2 and RTE              default .carry/glue
#   MINILM_DIR   all-MiniLM-L6-v2 weights (fp16 copy)       default .carry/minilm-fp16
#   ROBERTA_TOK  roberta-base tokenizer (vocab.json+merges) default .carry/roberta-tokenizer
#   PYTHON       the interpreter (may be a command line)    default python3
#   PEAK_FLOPS   the device's peak dense bf16 FLOP/s, MFU   default 989e12 (H100/H200)
set -uo pipefail
OUT=${1:-${OUT:-gpu_results}}
GLUE=${GLUE_DIR:-.carry/glue}
MINILM=${MINILM_DIR:-.carry/minilm-fp16}
TOK=${ROBERTA_TOK:-.carry/roberta-tokenizer}
PY=${PYTHON:-python3}
DRY=${GPU_DRY_RUN:-0}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false

for need in "$GLUE/SST-2/train.tsv" "$GLUE/RTE/train.tsv" "$MINILM/config.json" "$TOK/vocab.json"; do
  [[ -f "$need" ]] || { echo "missing $need: run bench/gpu_carry.sh, or set GLUE_DIR/MINILM_DIR/ROBERTA_TOK" >&2; exit 2; }
done
mkdir -p "$OUT"
COMMON=(paths.glue_dir="$GLUE" logger=csv trainer.enable_progress_bar=false)
# Random-weight shapes read the carried roberta-base tokenizer; ~recipe: the throughput settings,
# not the paper's recipe (its accumulation, fp32 and MNLI start would distort the comparison).
SHAPE=(model.pretrained=false model.tokenizer="$TOK" '~recipe')

if [[ "$DRY" == 1 ]]; then
  CAPS=(120 300 240 420 300 60)  # this 2-core CPU is slow; the caps only keep a dry run bounded
  PRECISION_RUN=(model=tiny_roberta task=sst2 trainer=cpu data.max_train_rows=256 data.max_eval_rows=32
    data.batch_size=16 trainer.max_epochs=1 trainer.log_every_n_steps=2 optimizer.lr=5e-3)
  DETERMINISM_RUN=(model.name_or_path="$MINILM" task=sst2 trainer=cpu data.max_train_rows=64
    data.max_eval_rows=32 data.batch_size=16 trainer.log_every_n_steps=2)
  BENCH=(--device cpu --steps 3 --warmup 1 --repeats 1 --no-inference --rows 64 --eval-rows 16)
  # Tiny models with the carried tokenizer's vocabulary, in place of the real shapes.
  ROBERTA=(model=tiny_roberta model.architecture.vocab_size=50265 model.architecture.pad_token_id=1)
  BASE=("${ROBERTA[@]}") LARGE=("${ROBERTA[@]}") SST2_LENGTH=64 RTE_LENGTH=64
  DEBERTA=(model=tiny_deberta model.architecture.vocab_size=50265 model.architecture.pad_token_id=1)
  DEBERTA_BENCH=("${BENCH[@]}") DEBERTA_LENGTH=64
else
  CAPS=(25 90 50 150 90 45)  # seconds: environment, then sections 1-5 (450 s = 7.5 min)
  PRECISION_RUN=(model.name_or_path="$MINILM" task=sst2 trainer=gpu data.max_train_rows=9600 trainer.log_every_n_steps=10)
  DETERMINISM_RUN=(model.name_or_path="$MINILM" task=sst2 trainer=gpu data.max_train_rows=3200 trainer.log_every_n_steps=10)
  BENCH=(--device cuda --steps 40 --warmup 10 --repeats 1 --no-inference --eval-rows 256 --peak-flops "${PEAK_FLOPS:-989e12}")
  BASE=(model=roberta_base) LARGE=(model=roberta_large) SST2_LENGTH=128 RTE_LENGTH=512
  DEBERTA=(model=deberta_v2_xxl)
  DEBERTA_BENCH=(--device cuda --steps 20 --warmup 5 --repeats 1 --no-inference --eval-rows 64 --peak-flops "${PEAK_FLOPS:-989e12}")
  DEBERTA_LENGTH=256
fi

START=$SECONDS
BUDGET=0
N=0
section() {  # title: the next cap starts; its deadline includes what earlier sections left unused
  CAP=${CAPS[$N]}; N=$((N + 1)); BUDGET=$((BUDGET + CAP)); DEADLINE=$((START + BUDGET)); T0=$SECONDS
  RUNS=()  # LABEL=PATH of the section's runs, for its report
  echo; echo "=== $* (cap ${CAP} s, $((DEADLINE - SECONDS)) s left with earlier sections' spare time)"
}
capped() {  # a command, given the seconds left before the section's deadline
  local left=$((DEADLINE - SECONDS))
  if ((left < 5)); then echo "--- not run, the section's time is up: $*" >&2; return 124; fi
  timeout -k 10 "$left" "$@"
}
report() {  # kind, then the report's options: writes OUT/<nn>-<kind>.json and .md
  local kind=$1; shift
  timeout 120 $PY -m glue_lora.bench.gpu_report "$kind" "$OUT" --seconds $((SECONDS - T0)) --cap "$CAP" "$@" \
    || echo "FAILED report $kind"
}
train() {  # name, then overrides: a train.py run in OUT/<name>, its console output in OUT/<name>.log
  local name=$1; shift
  capped $PY train.py "${COMMON[@]}" "$@" hydra.run.dir="$OUT/$name" >"$OUT/$name.log" 2>&1 \
    || echo "FAILED or cut: $name (exit $?), see $OUT/$name.log"
}
spawn() {  # train in the background; the run is labelled by its name without the section prefix
  RUNS+=("${1#*-}=$OUT/$1")
  train "$@" &
}
bench() {  # name, batch size, bench options, then overrides (options first): OUT/bench-<name>.json
  local name=$1 batch=$2; shift 2
  RUNS+=("$name=$OUT/bench-$name.json")
  echo "--- bench $name"
  capped $PY -m glue_lora.bench --batch-size "$batch" --out "$OUT/bench-$name.json" --work-dir "$OUT/bench-$name" \
    "$@" paths.glue_dir="$GLUE" >"$OUT/bench-$name.log" 2>&1 || echo "FAILED or cut: bench $name (exit $?), see $OUT/bench-$name.log"
}

section "environment"
capped $PY -m glue_lora.bench.gpu_report environment "$OUT" $([[ "$DRY" == 1 ]] && echo --dry-run) >/dev/null \
  || echo "FAILED environment"

section "1. mixed precision against 32-true"
spawn precision-32-true "${PRECISION_RUN[@]}" trainer.precision=32-true
spawn precision-16-mixed "${PRECISION_RUN[@]}" trainer.precision=16-mixed
spawn precision-bf16-mixed "${PRECISION_RUN[@]}" trainer.precision=bf16-mixed
spawn precision-bf16-frozen "${PRECISION_RUN[@]}" trainer.precision=bf16-mixed model.frozen_dtype=bfloat16
wait  # four small runs at once: correctness, not speed, is measured here
report precision --reference 32-true --runs "${RUNS[@]}"

section "2. deterministic=true twice"
spawn deterministic-1 "${DETERMINISM_RUN[@]}" deterministic=true
spawn deterministic-2 "${DETERMINISM_RUN[@]}" deterministic=true
wait
report determinism --runs "${RUNS[@]}"

section "3. throughput and memory, ours vs Trainer + PEFT"
SST2=(task=sst2 data.max_length=$SST2_LENGTH)  # run_glue.py's default length
RTE=(task=rte data.max_length=$RTE_LENGTH)     # the paper's RTE recipes'
# The shapes first, most telling first; then ours' levers on roberta-base, while time is left.
bench roberta-base-sst2 16 "${BENCH[@]}" "${BASE[@]}" "${SHAPE[@]}" "${SST2[@]}"
bench roberta-large-rte 8 "${BENCH[@]}" "${LARGE[@]}" "${SHAPE[@]}" "${RTE[@]}"
if [[ "$DRY" != 1 ]]; then  # the dry run's tiny shapes would repeat the two above
  bench roberta-base-rte 16 "${BENCH[@]}" "${BASE[@]}" "${SHAPE[@]}" "${RTE[@]}"
  bench roberta-large-sst2 8 "${BENCH[@]}" "${LARGE[@]}" "${SHAPE[@]}" "${SST2[@]}"
fi
bench roberta-base-sst2-ours-bf16-frozen 16 "${BENCH[@]}" --settings ours "${BASE[@]}" "${SHAPE[@]}" "${SST2[@]}" \
  model.frozen_dtype=bfloat16
# torch.compile with few static shapes (lengths rounded up to 16); not in a dry run: the CPU compiles for minutes.
[[ "$DRY" == 1 ]] || bench roberta-base-sst2-ours-compile 16 "${BENCH[@]}" --settings ours "${BASE[@]}" "${SHAPE[@]}" \
  "${SST2[@]}" model.compile=true data.pad_to_multiple_of=16
report throughput --runs "${RUNS[@]}"

section "4. DeBERTa-v2-xxlarge shape, gradient checkpointing off and on"
XXL=("${DEBERTA_BENCH[@]}" --settings ours "${DEBERTA[@]}" "${SHAPE[@]}" lora=r16 task=rte
  data.max_length=$DEBERTA_LENGTH data.padding=max_length model.frozen_dtype=bfloat16)
bench deberta-xxl-gc-false 8 "${XXL[@]}" model.gradient_checkpointing=false
bench deberta-xxl-gc-true 8 "${XXL[@]}" model.gradient_checkpointing=true
report deberta --runs "${RUNS[@]}"

section "5. QLoRA against bf16 frozen weights"
QLORA_CHECK='import importlib.util as u, torch
print("no CUDA GPU" if not torch.cuda.is_available() else "" if u.find_spec("bitsandbytes") else
      "bitsandbytes is not installed (its wheel, about 100 MB, is more than a device run can carry)")'
why=$(timeout 60 $PY -c "$QLORA_CHECK" 2>&1 | tail -1)
if [[ -z "$why" ]]; then
  bench qlora-4bit 8 "${XXL[@]}" model.quantize=4bit
  report qlora --runs bf16-frozen="$OUT/bench-deberta-xxl-gc-false.json" "${RUNS[@]}"
else
  report qlora --skipped "$why"
fi

echo; echo "=== done in $((SECONDS - START)) s"
# What comes back from the device is size-limited: drop the checkpoints (their sizes are in the
# bench JSON); adapters, logs, results.json and metrics stay.
[[ "${GPU_KEEP_CHECKPOINTS:-0}" == 1 ]] || { find "$OUT" -name '*.ckpt' -delete
  find "$OUT" -depth -type d -name 'checkpoint-*' -exec rm -rf {} +; }
$PY -m glue_lora.bench.gpu_report gather "$OUT"
