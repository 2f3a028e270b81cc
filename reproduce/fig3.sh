#!/usr/bin/env bash
# Regenerate Fig. 3 (linear and nonlinear regression) at the paper's scale.
set -euo pipefail
python -m dilightning.reproduce fig3 --scale paper --out paper_figures "$@"
