#!/usr/bin/env bash
# On the lent GPU machine (the device tool), after tools/gpu_wheels.sh here, with `carry: [".whl"]`:
#   tools/gpu_checks.sh tests          the GPU tests (tests/test_gpu.py) and one CLI video on CUDA
#   tools/gpu_checks.sh bench [ARGS]   python -m i2v bench --model i2vgen-xl-random ARGS (e.g. --compile)
#   tools/gpu_checks.sh bench-dit [ARGS]
#                                      the transformer families' speedups table (LoRA, step cache, turbo, compile)
#                                      on tiny-wan on CUDA; a later --model in ARGS wins (e.g. --model tiny-ltx2).
#                                      No full-size random-weight transformer model exists in the code (the only
#                                      full-size built-in is i2vgen-xl-random), and a real Wan is 30+ GB to bring:
#                                      so these are toy-size figures, their ratios only a first look at the GPU.
#   tools/gpu_checks.sh full-size [GiB]
#                                      the real-size Wan transformers (Wan 2.1 14B, Wan 2.2 TI2V-5B and I2V-A14B) with
#                                      random weights, built on the device in seconds, placed as the planner plans
#                                      them for a card of GiB (default 24; TI2V-5B also for 16): measured denoise peak
#                                      vs predicted, s/step (issue 16's targets). About 4 minutes on an H100.
# Logs, tables and JSON go to $OUT (the device tool brings them back). The first bench builds the full-size
# random-weight model (about 10 GB of RAM and 4.6 GB of disk, once per machine): keep both steps in one call
# when the time allows, since a new machine starts bare.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/i2v-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 I2V_CACHE_DIR=${I2V_CACHE_DIR:-/tmp/i2v-cache}

site=/tmp/i2v-site
if [ ! -d "$site/diffusers" ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
if [ ! -x /tmp/i2v-ffmpeg/package/ffmpeg ]; then
  mkdir -p /tmp/i2v-ffmpeg && tar -xzf .whl/ffmpeg-installer-linux-x64-*.tgz -C /tmp/i2v-ffmpeg
fi
export IMAGEIO_FFMPEG_EXE=/tmp/i2v-ffmpeg/package/ffmpeg

device=$("$PYTHON" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA GPU')")
echo "device: $device; torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"

case "${1:-tests}" in
  tests)
    status=0
    "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log" || status=$?
    "$PYTHON" - "$OUT/input.png" <<'EOF'
import sys
import numpy as np
from PIL import Image
y, x = np.mgrid[0:256, 0:256]
Image.fromarray(np.stack([x, y, (x + y) // 2], -1).astype(np.uint8)).save(sys.argv[1])
EOF
    "$PYTHON" -m i2v generate --model tiny --image "$OUT/input.png" --prompt "waves crashing, camera panning left" \
      --width 128 --height 128 --frames 8 --steps 4 --output "$OUT/tiny_cuda.mp4" --json 2>&1 | tee "$OUT/generate.log" \
      || status=$?
    exit "$status"
    ;;
  bench)
    shift
    "$PYTHON" -m i2v bench --model i2vgen-xl-random --markdown "$OUT/BENCHMARKS.md" --json "$OUT/bench.json" \
      --note "run by tools/gpu_checks.sh on $device" "$@" 2>&1 | tee "$OUT/bench.log"
    ;;
  bench-dit)
    shift
    "$PYTHON" -m i2v bench --model tiny-wan --markdown "$OUT/BENCHMARKS.md" --json "$OUT/bench_dit.json" \
      --note "run by tools/gpu_checks.sh bench-dit on $device (a tiny random-weight model: toy-size figures)" \
      "$@" 2>&1 | tee "$OUT/bench_dit.log"
    ;;
  full-size)
    card=${2:-24}
    status=0
    "$PYTHON" -m i2v bench --full-size wan22-ti2v,wan,wan22-a14b --gpu-memory "$card" \
      --markdown "$OUT/BENCHMARKS.md" --json "$OUT/full_size_${card}.json" 2>&1 | tee "$OUT/full_size_${card}.log" \
      || status=$?
    "$PYTHON" -m i2v bench --full-size wan22-ti2v --gpu-memory 16 --markdown "$OUT/BENCHMARKS_16.md" \
      --json "$OUT/full_size_16.json" 2>&1 | tee "$OUT/full_size_16.log" || status=$?
    exit "$status"
    ;;
  *)
    echo "usage: tools/gpu_checks.sh tests | bench [BENCH ARGS] | bench-dit [BENCH ARGS] | full-size [GiB]" >&2
    exit 2
    ;;
esac
