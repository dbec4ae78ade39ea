#!/usr/bin/env bash
# Run HERE (the dev box) before a GPU session: fills .data/ (git-ignored) with what the device machine
# lacks, so one `run` with carry=[".data"] can execute bench/device_check.sh there.
#   .data/fashion-mnist/*.gz          Fashion-MNIST's four IDX files (~30 MB), read through GRIDRUN_DATA
#   .data/jax_reference_bench.py      the project's plain-JAX reference, timed side by side on the GPU
set -euo pipefail
cd "$(dirname "$0")/.."
src=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
mkdir -p .data/fashion-mnist
cp -f "$src"/train-images-idx3-ubyte.gz "$src"/train-labels-idx1-ubyte.gz \
   "$src"/t10k-images-idx3-ubyte.gz "$src"/t10k-labels-idx1-ubyte.gz .data/fashion-mnist/
ref=${REFERENCE_BENCH:-../shared/reference/jax_reference_bench.py}
if [ -f "$ref" ]; then cp -f "$ref" .data/jax_reference_bench.py; fi
du -sh .data
