#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py, docs/gpu.md): installs fieldkit and the wheels carried in .whl
# (the packages the GPU machine's image lacks; `python bench/gpu_check.py --fetch-wheels .whl` gets
# them), then runs every stage. `bench/gpu_check.sh --dry-run` runs the same stages on the CPU here.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 FIELDKIT_CACHE="${FIELDKIT_CACHE:-/tmp/fieldkit-cache}"
if [[ " $* " == *" --dry-run "* ]]; then
    # a shared CPU: a second OpenMP thread waits on the other jobs (tests/conftest.py measured 20x)
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
else
    if compgen -G ".whl/*.whl" > /dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    # fieldkit itself, editable: its scenes/, viewer/ and cuda/ folders are mapped into the package
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . > /dev/null
fi
exec python3 bench/gpu_check.py "$@"
