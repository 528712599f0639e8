#!/usr/bin/env bash
# The fair method comparison's searches (issue 29; docs/search.md, docs/results/method_comparison.md):
# experiment=method_search for every method of experiment=method_comparison on MRPC and STS-B, one
# search at a time, method by method; each finished search's optimization_results.yaml, trials.md
# and trials.png are copied to docs/results/method_search/<task>/<method>/. Run it again to resume:
# finished searches return at once, a killed one goes on from its study (multirun/method_search/).
#   bash scripts/method_search.sh [overrides...]           # then the three-seed cells:
#   python train.py -m experiment=method_comparison_tuned
#   METHODS="vera bitfit" TASKS=stsb bash scripts/method_search.sh    # some of them
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python}
methods=${METHODS:-lora dora rslora pissa loraplus adalora vera bitfit head_only full}
tasks=${TASKS:-mrpc stsb}
cd "$here"
for method in $methods; do
  for task in $tasks; do
    sweep=multirun/method_search/$task/$method
    echo "== $(date -u +%F' '%T) search: $task $method ($sweep)"
    if "$python" train.py experiment=method_search "task=$task" "method=$method" "$@"; then
      mkdir -p "docs/results/method_search/$task/$method"
      cp "$sweep"/{optimization_results.yaml,trials.md,trials.png} "docs/results/method_search/$task/$method/"
    else
      echo "!! search $task $method failed, see above"
    fi
  done
done
