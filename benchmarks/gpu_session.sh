#!/usr/bin/env bash
# Every GPU check of this project in one go, sized for a GPU machine lent for a few minutes:
# the CUDA tests, the 20-epoch baseline per way of running it, the training benchmarks on CUDA,
# and the default 50-trial study. Each stage has its own time limit and log; a stage that fails
# or runs out of time does not stop the next.
#
#   OUT=some/dir bash benchmarks/gpu_session.sh [STAGE...]   (stages: tests profile baseline bench
#                                                           study; default all)
# VARIANTS="compiled-graph ..." picks benchmarks/gpu_baseline.py's variants (default: the
# default way and its eager twin; "all" for every one). The limits sum to 540 s, under the device
# tool's 600 s per call; its 8 files back are the 5 logs, bench.json, study.db and the trace.
#
# Needs: MNIST where hpo finds it ($HPO_DATA_DIR), and torch, optuna, pytest-benchmark importable.
# On a lent GPU machine that reaches no network (how the README's H100 figures were made), carry
# the data and optuna from here, in folders that .git/info/exclude lists:
#   mkdir -p .mnist_gz && for f in ~/.cache/hpo/mnist/MNIST/raw/*ubyte; do
#     gzip -c "$f" > .mnist_gz/$(basename "$f").gz; done
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .whl \
#     optuna==5.0.0 alembic==1.20.1 colorlog==6.12.0 mako==1.4.3 sqlalchemy==2.1.9
# and there, before this script:
#   pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl; export PYTHONPATH=/tmp/site
#   mkdir -p /tmp/mnist/MNIST/raw; for f in .mnist_gz/*.gz; do
#     gunzip -c "$f" > /tmp/mnist/MNIST/raw/$(basename "$f" .gz); done; export HPO_DATA_DIR=/tmp/mnist
set -uo pipefail
out=${OUT:-runs/gpu}
mkdir -p "$out"
out=$(cd "$out" && pwd)
repo=$(pwd)
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

stage() {  # stage NAME SECONDS CMD...: run CMD with a limit; log to $out/NAME.log; show its end
  local name=$1 limit=$2 began=$SECONDS
  shift 2
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "== $name: exit $? after $((SECONDS - began)) s"
  tail -n "${TAIL:-20}" "$out/$name.log"
}

stages=" ${*:-tests profile baseline bench study} "
want() { [[ $stages == *" $1 "* ]]; }

# To stdout only: the device tool brings back at most 8 files, and the stages write 8.
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
"$py" -c 'import torch, optuna; print("torch", torch.__version__, "cuda", torch.version.cuda, "optuna", optuna.__version__)'
want tests && stage tests "${LIMIT_TESTS:-110}" "$py" -m pytest -q -p no:cacheprovider -rs tests/test_cuda_graph.py tests/test_device.py
# The kernels of one epoch: how many per step, how busy the GPU is per step (the 2 s target's next step)
want profile && TAIL=35 stage profile "${LIMIT_PROFILE:-60}" "$py" -m benchmarks.profile_epoch --device cuda --trace "$out"
# shellcheck disable=SC2086  # VARIANTS is a list of words
variants=${VARIANTS:-compiled-graph eager-graph}
[ "$variants" = all ] && variants=""
want baseline && stage baseline "${LIMIT_BASELINE:-130}" "$py" -m benchmarks.gpu_baseline --seeds 5 $variants
want bench && stage bench "${LIMIT_BENCH:-110}" "$py" -m pytest -q -p no:cacheprovider benchmarks/test_training_speed.py -k cuda \
  --benchmark-json "$out/bench.json"
want study || exit 0
study=$(mktemp -d)
cp -r "$repo/studies" "$study/"
TAIL=30 stage study "${LIMIT_STUDY:-130}" bash -c "cd '$study' && time \
  '$py' -m hpo.cli run --trials 50 --device cuda --timeout ${STUDY_TIMEOUT:-90}"
"$py" -m benchmarks.time_split "sqlite:///$study/runs/hpo.db" mnist_mlp | tee -a "$out/study.log"
cp "$study/runs/hpo.db" "$out/study.db" 2>/dev/null
