#!/usr/bin/env bash
# The prepared GPU check of issues #3 (one model's s/epoch) and #5 (population throughput and the
# 145-trial sweep), as ONE device call of at most ~8 minutes. Prepare here first:
#     bash bench/device_prepare.sh
# then call the device tool with: command "bash bench/device_check.sh", carry [".data"], timeout_s 560.
# Logs land in $OUT (the tool brings them back) or ./device-out.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} GRIDRUN_DATA=$PWD/.data
export GRIDRUN_JAX_CACHE=$PWD/.jax_cache
py=python3
# QUICK=1: the same steps at CPU size, to try the script on the dev box before spending device time
if [ "${QUICK:-0}" = 1 ]; then ref_args="--quick"; fit_args="--quick"; pop_args="--quick --epochs 1 --sweep 4 --sweep-epochs 2 --sweep-dataset digits"
else ref_args="--pops 1,145"; fit_args="--epochs 6"; pop_args="--big --sweep 145 --sweep-epochs 35"; fi
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  $py -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} 2>&1 | tee "$out/env.txt"
# 1. the reference's figures on this very device (plain scan, vmapped populations), the baseline
# (it reads ./.data/fmnist.npz: written to a scratch folder, so .data/ here stays small enough to carry)
if [ -f .data/jax_reference_bench.py ]; then
  scratch=$(mktemp -d); mkdir -p "$scratch/.data"
  $py - "$scratch/.data/fmnist.npz" <<'PY'
import gzip, sys, numpy as np
root = ".data/fashion-mnist/"
x = np.frombuffer(gzip.open(root + "train-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 784)
y = np.frombuffer(gzip.open(root + "train-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
np.savez(sys.argv[1], x=x, y=y)
PY
  (cd "$scratch" && timeout 150 $py "$OLDPWD/.data/jax_reference_bench.py" $ref_args) 2>&1 | tee "$out/reference.log"
  rm -rf "$scratch"
fi
# 2. gridrun.fit, one model (issue #3: <= 0.05 s/epoch on an H100), beside the reference's plain scan
timeout 90 $py bench/fit_vs_keras.py --no-keras $fit_args --rounds 1 --reference .data/jax_reference_bench.py 2>&1 \
  | tee "$out/fit.log"
# 3. population throughput P = 1, 16, 64, 145, 512 and the chapter's sweep, 145 trials x 35 epochs (issue #5)
timeout 300 $py bench/population.py $pop_args --no-sequential 2>&1 | tee "$out/population.log"
echo "done $(date -u)" | tee -a "$out/env.txt"
