#!/usr/bin/env bash
# Prepares, on a machine that reaches PyPI, what benchmarks/gpu_session.sh needs on a lent GPU
# machine that reaches nothing: the real MNIST (gzipped, .mnist_gz/) and wheels of what that
# machine's Python lacks (.whl/: optuna and its needs; it has torch, pandas, pytest-benchmark).
# Both folders are listed in .git/info/exclude, so they travel only when a device call names them
# in `carry`. Run from the repo's root; safe to rerun (it rebuilds both).
#
#   bash benchmarks/gpu_carry.sh          # then: carry [".mnist_gz", ".whl"]
#
# The lent machine's Python is 3.12 (the device tool's KINDS.md); wheels are fetched for it.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}

for folder in .mnist_gz .whl; do
  grep -qxF "/$folder/" .git/info/exclude 2>/dev/null || echo "/$folder/" >>.git/info/exclude
done

# hpo's own acquisition, so the files are the verified ones hpo reads.
# `hpo data` prints each verified file's path first on its line.
files=$("$py" -m hpo.cli data 2>/dev/null | awk '$NF == "ok" {print $1}')
[ "$(echo "$files" | wc -w)" -eq 4 ] || { echo "hpo data did not verify the 4 MNIST files" >&2; exit 1; }
rm -rf .mnist_gz && mkdir .mnist_gz
for f in $files; do gzip -c "$f" >".mnist_gz/$(basename "$f").gz"; done

# Exact versions, as this machine's tests ran them; one version of each (two stop the install).
rm -rf .whl
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl optuna==5.0.0 alembic==1.20.1 colorlog==6.12.0 mako==1.4.3 sqlalchemy==2.1.9

du -sh .mnist_gz .whl
echo "ready: call the device tool with carry [\".mnist_gz\", \".whl\"] and" \
  "command 'bash benchmarks/gpu_session.sh'"
