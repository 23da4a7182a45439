#!/usr/bin/env bash
# Every modality's training step on a lent GPU in bf16, plus the reference ECG-JEPA step when its checkout is
# present: one JSON ($OUT/gpu_suite.json on the device machine, else benchmarks/results/gpu_suite.json) and a table.
# No network is needed: the data are the modalities' embedded defaults. Budget: under 8 minutes on one H100.
#
#   bash benchmarks/gpu_suite.sh [extra gpu_suite.py flags]        # e.g. --steps 10 --modalities ecg,eeg
#   ECG_JEPA_REFERENCE=path/to/ECG-JEPA bash benchmarks/gpu_suite.sh
#   bash benchmarks/gpu_suite.sh --device cpu --steps 1 --quick    # dry run on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONUNBUFFERED=1
exec timeout "${GPU_SUITE_TIMEOUT:-470}" "$PY" benchmarks/gpu_suite.py "$@"
