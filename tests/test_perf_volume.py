"""benchmarks/perf.py --volume: a synthetic volume through `super_resolve`, timed and recorded."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_perf_volume_times_every_map(tmp_path):
    out = tmp_path / "perf.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "perf.py"), "--recipe", "ftddm"]
    cmd += ["--size", "tiny", "--batches", "", "--volume", "--volume-slices", "2"]
    cmd += ["--samples", "2", "--set", "sampler.type=dpm_solver_pp", "--set", "sampler.steps=2"]
    cmd += ["--json", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    row = json.loads(out.read_text())["volume"]
    assert row["maps"] == 2 * 7  # two slices of each of the 7 metabolites, all inside the mask
    assert row["nfe"] == 1 + 2 and row["samples"] == 2 and row["batch"] == 16
    assert row["seconds"] > 0 and row["precision"] == "fp32"
    assert "14 maps" in res.stdout
