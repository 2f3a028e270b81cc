#!/usr/bin/env bash
# Regenerate Fig. 4 (MNIST) at the quick scale. MNIST must be in ./data/MNIST/raw or pass --download.
set -euo pipefail
python -m dilightning.reproduce fig4 --scale quick --data-dir "${DATA_DIR:-data}" --out paper_figures "$@"
