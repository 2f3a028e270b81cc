#!/usr/bin/env bash
# Regenerate every figure and table, then REPORT.md (Fig. 3 and Suppl. Fig. 5 at paper scale, Fig. 4 quick).
set -euo pipefail
python -m dilightning.reproduce all --scale quick --data-dir "${DATA_DIR:-data}" --out paper_figures "$@"
