#!/usr/bin/env bash
# GPU checks (issue 8): mixed precision, CUDA determinism, throughput and memory against HF Trainer +
# PEFT on the paper's shapes, torch.compile, DDP with one device, MiniLM on full SST-2.
#
#   bash bench/gpu.sh [OUT_DIR]            # on a machine with one CUDA GPU
#   GPU_DRY_RUN=1 bash bench/gpu.sh        # CPU: every step with tiny sizes, to check the script
#
# Inputs (defaults suit the device tool's carried folder .carry/, see README "Performance"):
#   GLUE_DIR       GLUE data (SST-2 and RTE are enough)       default .carry/glue
#   MINILM_DIR     all-MiniLM-L6-v2 weights (fp16 copy is fine) default .carry/minilm-fp16, else bundled
#   ROBERTA_TOK    roberta-base tokenizer (vocab.json+merges)  default .carry/roberta-tokenizer
# Every section writes under OUT_DIR and the last step prints one markdown summary.
set -uo pipefail
OUT=${1:-${OUT:-gpu_results}}
GLUE=${GLUE_DIR:-.carry/glue}
MINILM=${MINILM_DIR:-.carry/minilm-fp16}
ROBERTA_TOK=${ROBERTA_TOK:-.carry/roberta-tokenizer}
PY=${PYTHON:-python}
mkdir -p "$OUT"

if [[ "${GPU_DRY_RUN:-0}" == 1 ]]; then
  DEVICE=(trainer.accelerator=cpu trainer.precision=32-true)
  SIZE=(data.max_train_rows=64 data.max_eval_rows=32 trainer.max_epochs=1)
  BIG=(model=tiny_roberta)
  BENCH=(--device cpu --steps 3 --warmup 1 --repeats 1 --no-inference)
  PRECISIONS=(32-true)
  SST2_TIME=30
else
  DEVICE=(trainer=gpu)
  SIZE=(trainer.max_epochs=3)
  BIG=()
  BENCH=(--device cuda --steps 60 --warmup 10 --repeats 3)
  PRECISIONS=(32-true 16-mixed bf16-mixed)
  SST2_TIME=600
fi
[[ -d "$MINILM" ]] && MODEL=(model.name_or_path="$MINILM") || MODEL=()
COMMON=(paths.glue_dir="$GLUE" logger=csv trainer.enable_progress_bar=false "${DEVICE[@]}")
step() { echo; echo "=== $*"; }

# 1. Mixed precision trains correctly; LoRA and head stay fp32; frozen weights in bf16.
for p in "${PRECISIONS[@]}"; do
  step "precision $p (MiniLM, RTE)"
  $PY train.py "${MODEL[@]}" task=rte "${COMMON[@]}" "${SIZE[@]}" trainer.precision="$p" \
    hydra.run.dir="$OUT/precision-$p" || echo "FAILED precision $p"
done
step "frozen weights in bf16"
$PY train.py "${MODEL[@]}" task=rte "${COMMON[@]}" "${SIZE[@]}" model.frozen_dtype=bfloat16 \
  hydra.run.dir="$OUT/frozen-bf16" || echo "FAILED frozen bf16"

# 2. deterministic=true: two runs give identical metrics and adapters.
for i in 1 2; do
  step "deterministic run $i"
  $PY train.py "${MODEL[@]}" task=rte "${COMMON[@]}" "${SIZE[@]}" deterministic=true \
    hydra.run.dir="$OUT/deterministic-$i" || echo "FAILED deterministic $i"
done

# 3. Throughput and peak memory against Trainer + PEFT, real shapes with random weights.
bench() {  # name, batch size, then Hydra overrides
  local name=$1 batch=$2; shift 2
  step "bench $name"
  $PY -m glue_lora.bench "${BENCH[@]}" --batch-size "$batch" --out "$OUT/bench-$name.json" \
    --work-dir "$OUT/bench-$name" paths.glue_dir="$GLUE" "$@" || echo "FAILED bench $name"
}
[[ -d "$ROBERTA_TOK" ]] && TOK=(model.tokenizer="$ROBERTA_TOK") || TOK=()
if [[ "${GPU_DRY_RUN:-0}" == 1 ]]; then
  bench tiny-sst2 8 "${BIG[@]}" task=sst2
else
  bench roberta-base-sst2 16 model=roberta_base model.pretrained=false "${TOK[@]}" task=sst2
  bench roberta-base-rte 16 model=roberta_base model.pretrained=false "${TOK[@]}" task=rte
  bench roberta-large-sst2 8 model=roberta_large model.pretrained=false "${TOK[@]}" task=sst2
  bench roberta-large-rte 8 model=roberta_large model.pretrained=false "${TOK[@]}" task=rte
  for gc in false true; do
    bench "deberta-xxl-mnli256-gc-$gc" 8 model=deberta_v2_xxl model.pretrained=false "${TOK[@]}" \
      lora=r16 task=rte data.max_length=256 model.gradient_checkpointing=$gc
  done
fi

# 4. torch.compile on and off; the DDP path with one device.
step "torch.compile"
$PY train.py "${MODEL[@]}" task=sst2 "${COMMON[@]}" "${SIZE[@]}" model.compile=true \
  hydra.run.dir="$OUT/compile-on" || echo "FAILED compile"
step "DDP, devices=1"
$PY train.py "${MODEL[@]}" task=sst2 "${COMMON[@]}" "${SIZE[@]}" trainer.strategy=ddp trainer.devices=1 \
  hydra.run.dir="$OUT/ddp-1" || echo "FAILED ddp"

# 5. QLoRA: frozen weights in 4-bit NF4 (bitsandbytes) against bf16 frozen weights.
for q in none 4bit; do
  bench "qlora-$q" 8 "${BIG[@]:-model=deberta_v2_xxl}" model.pretrained=false "${TOK[@]}" lora=r16 task=rte \
    data.max_length=256 model.quantize=$q model.frozen_dtype=bfloat16
done

# 6. MiniLM on full SST-2: best dev accuracy in the time budget, time to 0.85 and 0.88.
step "MiniLM SST-2, ${SST2_TIME}s"
$PY train.py "${MODEL[@]}" task=sst2 "${COMMON[@]}" trainer.max_epochs=10 trainer.max_time="00:00:$((SST2_TIME / 60)):$((SST2_TIME % 60))" \
  trainer.val_check_interval=200 optimizer.lr=1e-3 hydra.run.dir="$OUT/sst2-full" \
  $([[ "${GPU_DRY_RUN:-0}" == 1 ]] && echo data.max_train_rows=256 data.max_eval_rows=64 trainer.val_check_interval=4) \
  || echo "FAILED sst2"

step "summary"
$PY - "$OUT" <<'PY'
import hashlib, json, sys
from pathlib import Path
out = Path(sys.argv[1])
def res(name):
    p = out / name / "results.json"
    return json.loads(p.read_text()) if p.is_file() else None
print("| run | dev score | samples/s | peak MB |\n|---|---|---|---|")
for d in sorted(p.parent.name for p in out.glob("*/results.json")):
    r = res(d)
    print(f"| {d} | {r['score']:.4f} | {r['train']['samples_per_second']} | {r['train']['peak_memory_mb']} |")
a, b = res("deterministic-1"), res("deterministic-2")
if a and b:
    digest = lambda d: hashlib.sha256((out / d / "adapter" / "adapter_model.safetensors").read_bytes()).hexdigest()
    print(f"\ndeterministic: metrics equal {a['history'] == b['history'] and a['dev'] == b['dev']}, "
          f"adapters equal {digest('deterministic-1') == digest('deterministic-2')}")
s = res("sst2-full")
if s:
    for target in (0.85, 0.88):
        hit = next((h for h in s["history"] if h["dev"]["accuracy"] >= target), None)
        print(f"SST-2 first reached {target}: " + (f"step {hit['step']}" if hit else "not reached"))
    print(f"SST-2 best dev accuracy {s['score']:.4f}")
for f in sorted(out.glob("bench-*.json")):
    print(f"\n{f.stem}: see {f}")
PY
