#!/usr/bin/env bash
# Every GPU check of this project in one go, sized for a GPU machine lent for a few minutes:
# the 20-epoch baseline per way of running it (issue #6's target, first), the CUDA tests, the
# training benchmarks on CUDA, a profile of one epoch's kernels, and the default study. Each stage
# has its own time limit and log; a stage that fails or runs out of time does not stop the next.
#
#   OUT=some/dir bash benchmarks/gpu_session.sh [STAGE...]   (stages: baseline tests bench
#                                                           profile study; default all)
# VARIANTS="compiled-graph ..." picks benchmarks/gpu_baseline.py's variants (default: the
# default way and its eager twin; "all" for every one). The limits sum to 420 s, so that a lease
# of 15 minutes (a minute or two of it the machine's start) leaves room to rerun one stage; its 8
# files back are the 5 logs, bench.json, study.db and the trace.
#
# Needs: MNIST where hpo finds it ($HPO_DATA_DIR), and torch, optuna, pytest-benchmark importable.
# A lent GPU machine reaches no network and has no optuna: on this side first run
#   bash benchmarks/gpu_carry.sh
# which writes .mnist_gz/ (the data) and .whl/ (optuna and its needs), and name both in the
# device call's `carry`. This script installs and unpacks them itself when they are there.
set -uo pipefail
out=${OUT:-runs/gpu}
mkdir -p "$out"
out=$(cd "$out" && pwd)
repo=$(pwd)
py=${PYTHON:-python3}

if [ -d .whl ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/hpo-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/hpo-site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -d .mnist_gz ] && [ -z "${HPO_DATA_DIR:-}" ]; then
  mkdir -p /tmp/hpo-mnist/MNIST/raw
  for f in .mnist_gz/*.gz; do gunzip -c "$f" >"/tmp/hpo-mnist/MNIST/raw/$(basename "$f" .gz)"; done
  export HPO_DATA_DIR=/tmp/hpo-mnist
fi
export PYTHONUNBUFFERED=1 PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
# Fail in seconds rather than in every stage: most stages need optuna, all need the data.
"$py" -c 'import optuna, pytest_benchmark' ||
  { echo "optuna or pytest-benchmark missing: run benchmarks/gpu_carry.sh here and carry .whl" >&2; exit 1; }
"$py" -m hpo.cli data --offline >/dev/null ||
  { echo "no verified MNIST: run benchmarks/gpu_carry.sh here and carry .mnist_gz" >&2; exit 1; }

stage() {  # stage NAME SECONDS CMD...: run CMD with a limit; log to $out/NAME.log; show its end
  local name=$1 limit=$2 began=$SECONDS
  shift 2
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "== $name: exit $? after $((SECONDS - began)) s"
  tail -n "${TAIL:-20}" "$out/$name.log"
}

stages=" ${*:-baseline tests bench profile study} "
want() { [[ $stages == *" $1 "* ]]; }

# To stdout only: the device tool brings back at most 8 files, and the stages write 8.
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
"$py" -c 'import torch, optuna; print("torch", torch.__version__, "cuda", torch.version.cuda, "optuna", optuna.__version__)'
variants=${VARIANTS:-compiled-graph eager-graph}
[ "$variants" = all ] && variants=""
# shellcheck disable=SC2086  # VARIANTS is a list of words
want baseline && stage baseline "${LIMIT_BASELINE:-100}" "$py" -m benchmarks.gpu_baseline --seeds 5 $variants
want tests && stage tests "${LIMIT_TESTS:-110}" "$py" -m pytest -q -p no:cacheprovider -rs tests/test_cuda_graph.py tests/test_device.py
want bench && stage bench "${LIMIT_BENCH:-80}" "$py" -m pytest -q -p no:cacheprovider benchmarks/test_training_speed.py -k cuda \
  --benchmark-json "$out/bench.json"
# The kernels of one epoch: how many per step, how busy the GPU is per step (the 2 s target's next step)
want profile && TAIL=35 stage profile "${LIMIT_PROFILE:-60}" "$py" -m benchmarks.profile_epoch --device cuda --trace "$out"
want study || exit 0
study=$(mktemp -d)
cp -r "$repo/studies" "$study/"
TAIL=30 stage study "${LIMIT_STUDY:-70}" bash -c "cd '$study' && time \
  '$py' -m hpo.cli run --trials 50 --device cuda --timeout ${STUDY_TIMEOUT:-45}"
"$py" -m benchmarks.time_split "sqlite:///$study/runs/hpo.db" mnist_mlp | tee -a "$out/study.log"
cp "$study/runs/hpo.db" "$out/study.db" 2>/dev/null
