"""The benchmark runs at a small size and writes one JSON record per algorithm, shape and measurement."""

from __future__ import annotations

import json

from dilightning.benchmark import main


def test_benchmark_writes_json(tmp_path):
    path = tmp_path / "benchmark.json"

    code = main(
        ["--size", "small", "--shapes", "regression", "mnist", "--algorithms", "BP", "NDI", "DI", "SLDI",
         "--skip-memory", "--json", str(path)]
    )

    payload = json.loads(path.read_text())
    records = payload["records"]
    assert code == 0
    assert payload["environment"]["torch"]
    timed = [r for r in records if r["measurement"] in ("propagation", "training_step")]
    assert len(timed) == 2 * 4 * 2  # shapes x algorithms x measurements
    assert all(r["seconds_median"] > 0 for r in timed)
    assert {"algorithm", "shape", "batch", "seconds_median"} <= set(timed[0])
    ndi = next(r for r in timed if r["algorithm"] == "NDI")
    assert ndi["ratio_to_ndi"] == 1.0
    assert any(r["measurement"].startswith("lightning_update") for r in records)
