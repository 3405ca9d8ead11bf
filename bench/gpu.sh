#!/usr/bin/env bash
# Issue 18 section 3 on a GPU, as one script in under 8 minutes: the CUDA tests (pytest -m gpu),
# the UNet-32 target (bench/scan_target.py: a full scan, 118 variants x 500 slices at 256 px, bf16
# and exact fp32, stacked and one variant at a time) and the trained-model table (bench/scan.py
# --device cuda). Prepared on a CPU-only machine: see docs/performance.md, section "GPU".
#
#   bash bench/gpu.sh --prepare     # here, once: the nibabel wheel the GPU image lacks, into .whl/
#   bash bench/gpu.sh               # on the GPU machine (device tool: carry [".whl"], timeout_s 540)
#   bash bench/gpu.sh --cpu-check   # here: every step at toy sizes on the CPU (does the script run?)
#
# Each step has its own time limit and the script goes on after a failed one; logs go to $OUT (the
# device tool brings that folder back) or /tmp/gpu-bench, and the last lines sum up.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-gpu}
LOGS=${OUT:-/tmp/gpu-bench}
mkdir -p "$LOGS"
if [ -x .venv/bin/python ]; then PY=$PWD/.venv/bin/python; else PY=python3; fi
export PYTHONUNBUFFERED=1

if [ "$MODE" = "--prepare" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    exec "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform any -d .whl nibabel==5.4.2
fi

# reuse_console importable: the editable install here; on a bare image a folder of links that maps
# the package onto the tree as pyproject.toml's package-dir does
if ! "$PY" -c "import reuse_console.engine" 2>/dev/null; then
    shim=/tmp/rc-shim/reuse_console
    mkdir -p "$shim"
    for f in pkg/*.py; do ln -sfn "$PWD/$f" "$shim/$(basename "$f")"; done
    for d in engine store tui; do ln -sfn "$PWD/$d" "$shim/$d"; done
    export PYTHONPATH=/tmp/rc-shim${PYTHONPATH:+:$PYTHONPATH}
fi
if ! "$PY" -c "import nibabel" 2>/dev/null; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site:$PYTHONPATH
    else
        echo "nibabel is missing: run 'bash bench/gpu.sh --prepare' where pip works and carry .whl" >&2
        exit 2
    fi
fi

if [ "$MODE" = "--cpu-check" ]; then
    DEVICE=cpu
    TESTS="tests/engine/swaps/test_stacked.py -k tf32"  # the gpu tests skip here; one CPU test of the flags
    TARGET="--width 4 --size 32 --slices 8 --batch 4 --stack 2 --loop --threads 2"
    BENCH="--archs unet --lab $LOGS/bench-lab-cpu --epochs 1 --subjects 6 --val-subjects 2 --naive-variants 2 --threads 2 --stack 2"
    LIMITS=(300 300 900)
else
    DEVICE=cuda
    TESTS="-m gpu tests/engine/swaps/test_stacked.py tests/engine/training/test_train.py tests/engine/grids/test_grid.py"
    TARGET="--loop --threads 8"
    BENCH="--archs unet,pspnet --lab /tmp/bench-lab-gpu --epochs 3 --naive-variants 6 --threads 8"
    LIMITS=(100 200 150)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

step() {  # name, seconds, command...
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - t0)) s (limit $limit s); log $LOGS/$name.log"
    tail -n 25 "$LOGS/$name.log"
}

# shellcheck disable=SC2086  # the option strings split into words on purpose
{
    step tests "${LIMITS[0]}" "$PY" -m pytest -q -p no:cacheprovider $TESTS
    step target "${LIMITS[1]}" "$PY" bench/scan_target.py --device "$DEVICE" $TARGET
    step bench "${LIMITS[2]}" "$PY" bench/scan.py --device "$DEVICE" $BENCH
}
echo "== summary ($DEVICE)"
grep -h -E "passed|failed|^target:|^scan speedup:" "$LOGS/tests.log" "$LOGS/target.log" "$LOGS/bench.log" || true
