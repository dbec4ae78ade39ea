#!/usr/bin/env bash
# The prepared GPU check of issues #3 (one model's s/epoch), #5 (population throughput and the
# 145-trial sweep), #14 (your own loop: bench/own_loop.py), #11 (population + ASHA) and #20 (PBT in a population of
# 128), as ONE device call of at most ~10 minutes (the step limits add up to 585 s), so that a 15-minute device budget
# leaves room for a machine start and one rerun. Prepare here first:
#     bash bench/device_prepare.sh
# then call the device tool with: command "bash bench/device_check.sh", carry [".data"], timeout_s 600.
# Most important first; each step has its own time limit, so a slow step costs only its own figures.
# Logs land in $OUT (the tool brings them back) or ./device-out.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} GRIDRUN_DATA=$PWD/.data
export GRIDRUN_JAX_CACHE=$PWD/.jax_cache
py=python3
# QUICK=1: the same steps at CPU size, to try the script on the dev box before spending device time
if [ "${QUICK:-0}" = 1 ]; then
  sweep_args="--sweep 4 --sweep-epochs 2 --sweep-dataset digits"; pop_args="--quick --epochs 1"
  fit_args="--quick"; ref_args="--quick"; own_args="--samples 2000 --val 500 --epochs 1 --rounds 1 --population 4"
else
  sweep_args="--sweep 145 --sweep-epochs 35"; pop_args="--big"; fit_args="--epochs 6"; ref_args="--pops 1,145"
  own_args="--samples 60000 --val 10000 --epochs 2 --rounds 1 --population 16"
fi
{
  date -u; timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  timeout 60 $py -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} 2>&1 | tee "$out/env.txt"
# 1. issue #5: the chapter's sweep sampled to 145 trials, 35 epochs, in population mode (goal <= 60 s)
timeout 120 $py bench/population.py --no-throughput $sweep_args --no-sequential 2>&1 | tee "$out/sweep.log"
# 2. issue #5: throughput per trial-epoch, sequential fit and P = 1, 16, 64, 145 (+512): goal <= 3 ms at P >= 145
timeout 120 $py bench/population.py $pop_args 2>&1 | tee "$out/population.log"
# 3. issue #3: gridrun.fit, one model (goal <= 0.05 s/epoch), beside the reference's plain scan
timeout 45 $py bench/fit_vs_keras.py --no-keras $fit_args --rounds 1 --reference .data/jax_reference_bench.py 2>&1 \
  | tee "$out/fit.log"
# 4. issue #14: your own loop (the NNX MLP example's nnx.jit loop vs gridrun.fit_loop vs gridrun.fit, and
# populations of 16 through each): s/epoch, ratios, compilations after the first trial, GFLOP/s
timeout 80 $py bench/own_loop.py $own_args 2>&1 | tee "$out/own_loop.log"
# 5. the reference's own figures on this device (plain scan, vmapped populations): the baseline.
# It reads ./.data/fmnist.npz: written to a scratch folder, so .data/ here stays small enough to carry.
if [ -f .data/jax_reference_bench.py ]; then
  scratch=$(mktemp -d); mkdir -p "$scratch/.data"
  timeout 30 $py - "$scratch/.data/fmnist.npz" <<'PY'
import gzip, sys, numpy as np
root = ".data/fashion-mnist/"
x = np.frombuffer(gzip.open(root + "train-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 784)
y = np.frombuffer(gzip.open(root + "train-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
np.savez(sys.argv[1], x=x, y=y)
PY
  (cd "$scratch" && timeout 40 $py "$OLDPWD/.data/jax_reference_bench.py" $ref_args) 2>&1 | tee "$out/reference.log"
  rm -rf "$scratch"
fi
# 6. issue #11: population + ASHA with slot refilling against an unpruned population (time per trial-epoch in
# the programs' loop; target <= 1.10x), first seed only; rows cut on the device (an accelerator's path)
if [ "${QUICK:-0}" = 1 ]; then search_args="--n-train 2000 --epochs 3 --trials 8 --slots 4 --dataset digits"
else search_args="--n-train 20000 --slots 32 --trials 96"; fi
timeout 100 $py bench/search.py --only-population --seeds 0 $search_args 2>&1 | grep -v '^Sweep' | tee "$out/search.log"
# 7. issue #20: PBT inside one vmapped program of 128 trials (the anchor's MLP, full Fashion-MNIST) against the
# same 128 trials as an unpruned population: best val_loss, test accuracy, wall time and the program's
# breakdown (epochs, exploit/explore gathers, recording); sequential strategies skipped (hours at this size)
if [ "${QUICK:-0}" = 1 ]; then pbt_args="--trials 8 --epochs 4 --n 3000 --dataset digits"
else pbt_args="--trials 128 --epochs 10 --n 60000"; fi
timeout 80 $py bench/pbt.py --seeds 0 --no-sequential $pbt_args 2>&1 | tee "$out/pbt.log"
echo "done $(date -u)" | tee -a "$out/env.txt"
