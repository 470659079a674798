#!/usr/bin/env bash
# The one-shot GPU check of issue 13 (docs/scale.md): <= 8 minutes on one CUDA GPU, ONE table on stdout, exit 1 if a
# row FAILs (a wrong result; "below target" rows are reported, not failed). Without a GPU it says so and exits 0,
# having checked nothing. Extra arguments go to dev/gpu_check.py (e.g. --cpu_smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ " $* " != *" --cpu_smoke "* ]] && ! python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False), so nothing was checked."
    exit 0
fi
# 540 s: the 8 minutes plus a minute of slack; a hung NCCL or compile step ends here, not in the CI's timeout
exec timeout 540 python dev/gpu_check.py "$@"
