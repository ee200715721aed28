#!/usr/bin/env bash
# Here (a machine with the package registries): fetch what the lent GPU machine lacks into .whl/, which git ignores
# and the device tool carries (`carry: [".whl"]`). That machine has Python 3.12 with torch, accelerate,
# huggingface-hub and safetensors at our pins, but no diffusers, transformers 5.17 (we need 5.5.4: 5.6 removed
# CLIPTextModel.text_model, which I2VGen-XL uses), tokenizers 0.23, no ftfy and no ffmpeg. Then run
# tools/gpu_checks.sh there. About 44 MB: the carry limit is 64 MiB with the working tree.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
grep -qxF "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
rm -rf .whl && mkdir .whl
pin() { grep -E "^$1==" requirements.txt | head -1; }
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "$(pin diffusers)" "$(pin transformers)" "$(pin tokenizers)" "$(pin ftfy)" wcwidth importlib_metadata
# imageio-ffmpeg's platform wheel bundles a 68 MB ffmpeg (over the carry limit): take its pure-Python wheel and a
# static ffmpeg with libx264 from npm (23 MB), pointed at by IMAGEIO_FFMPEG_EXE in gpu_checks.sh.
python3 -m pip wheel -q --no-deps --no-binary :all: -w .whl "$(pin imageio-ffmpeg)"
(cd .whl && npm pack -q @ffmpeg-installer/linux-x64@4.1.0 >/dev/null)
du -sh .whl && ls .whl
