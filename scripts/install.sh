#!/usr/bin/env bash
# Create .venv and install moondream_iac with everything its tests need.
#
# torch is pinned to 2.13.0. On the project's machines pip finds a CPU build of it on the
# local disk; elsewhere PyPI serves a CUDA build of several GB, unless TORCH_INDEX_URL
# names another index, e.g. https://download.pytorch.org/whl/cpu for the CPU build.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate

echo "==> installing torch 2.13.0"
torch_index=()
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  torch_index=(--index-url "$TORCH_INDEX_URL")
fi
python -m pip install --quiet --disable-pip-version-check "${torch_index[@]}" torch==2.13.0

echo "==> installing moondream_iac with the runtime, modal and test extras"
python -m pip install --quiet --disable-pip-version-check -e '.[runtime,modal,test]'

# The PyPI moondream client pins kestrel, which pulls a CUDA torch; its HTTP client
# needs only Pillow, so it is installed without dependencies.
echo "==> installing the PyPI moondream client (HTTP client only)"
python -m pip install --quiet --disable-pip-version-check --no-deps moondream==2.6.1

if command -v npm >/dev/null 2>&1 && [ -f tests/node/package-lock.json ]; then
  echo "==> installing the npm moondream client 0.1.1 for the client tests"
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
else
  echo "==> npm not found: the npm client tests will be skipped"
fi
echo "==> done: activate with . .venv/bin/activate"
