"""benchmarks/merge_bench.py: bench runs merged on shared maps, p-values re-paired."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "merge_bench.py"
MAPS = [["sub-01", "NAA", i] for i in range(12)]


def _run(folder: Path, models: dict[str, np.ndarray], scale: int = 4) -> Path:
    """A bench `results.json` with per-map SSIM/PSNR/NRMSE for each model and the LR input."""
    rng = np.random.default_rng(len(folder.name))
    models = {**models, "lr_input": np.linspace(0.70, 0.75, len(MAPS))}
    rows, scores = [], {}
    for name, ssim in models.items():
        rows.append({"model": name, "scale": scale, "ssim_mean": float(ssim.mean())})
        scores[f"{name}@{scale}"] = {
            "maps": MAPS,
            "ssim": [float(v) for v in ssim],
            "psnr": [float(v) for v in 20 + 10 * ssim + rng.normal(0, 0.01, len(ssim))],
            "nrmse": [float(v) for v in 1 - ssim],
        }
    folder.mkdir()
    path = folder / "results.json"
    config = {"size": "tiny", "data": "phantom", "fold": 0, "seed": 0, "limit": len(MAPS)}
    run = {"rows": rows, "config": config, "machine": "test", "maps": MAPS, "scores": scores}
    path.write_text(json.dumps(run))
    return path


def _merge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT
    )


def test_merge_keeps_first_row_or_replaces_with_last(tmp_path):
    base = np.linspace(0.85, 0.90, len(MAPS))
    a = _run(tmp_path / "run-a", {"ftddm": base + 0.02, "respace": base})
    b = _run(tmp_path / "run-b", {"respace": base + 0.05})
    merged = tmp_path / "merged.json"
    assert _merge(str(a), str(b), "--out", str(merged)).returncode == 0
    out = json.loads(merged.read_text())
    row = next(r for r in out["rows"] if r["model"] == "respace")
    assert row["ssim_mean"] == base.mean()  # the first run's row is kept
    assert out["config"]["merged_from"] == ["run-a", "run-b"]

    again = tmp_path / "again.json"
    done = _merge(str(merged), str(b), "--replace", "--out", str(again))
    assert done.returncode == 0, done.stderr
    out = json.loads(again.read_text())
    row = next(r for r in out["rows"] if r["model"] == "respace")
    assert np.isclose(row["ssim_mean"], (base + 0.05).mean())
    assert out["scores"]["respace@4"]["ssim"] == [float(v) for v in base + 0.05]
    # re-paired against the reference (ftddm, 0.03 below the new respace on every map)
    assert row["p_ssim"] is not None and row["p_ssim"] < 0.01
    assert out["config"]["merged_from"] == ["run-a", "run-b", "run-b"]
    assert out["config"]["reference"] == "ftddm"
    assert [r["model"] for r in out["rows"]].count("lr_input") == 1


def test_merge_refuses_runs_on_other_maps(tmp_path):
    a = _run(tmp_path / "run-a", {"ftddm": np.full(len(MAPS), 0.9)})
    b = _run(tmp_path / "run-b", {"tdpm": np.full(len(MAPS), 0.8)})
    run = json.loads(b.read_text())
    run["maps"] = [["sub-02", "NAA", i] for i in range(len(MAPS))]
    b.write_text(json.dumps(run))
    done = _merge(str(a), str(b), "--out", str(tmp_path / "m.json"))
    assert done.returncode == 2 and "scored other maps" in done.stderr
    assert not (tmp_path / "m.json").exists()


def test_merge_puts_a_run_in_another_map_order_in_the_merged_order(tmp_path):
    base = np.linspace(0.85, 0.90, len(MAPS))
    a = _run(tmp_path / "run-a", {"ftddm": base})
    b = _run(tmp_path / "run-b", {"respace": base + 0.01})
    run = json.loads(b.read_text())  # the same maps, listed backwards
    run["maps"] = MAPS[::-1]
    for entry in run["scores"].values():
        for metric in ("ssim", "psnr", "nrmse"):
            entry[metric] = entry[metric][::-1]
    b.write_text(json.dumps(run))
    merged = tmp_path / "merged.json"
    done = _merge(str(a), str(b), "--out", str(merged))
    assert done.returncode == 0, done.stderr
    out = json.loads(merged.read_text())
    assert out["scores"]["respace@4"]["ssim"] == [float(v) for v in base + 0.01]
    row = next(r for r in out["rows"] if r["model"] == "respace")
    assert row["p_ssim"] < 0.01  # paired map by map: 0.01 above on every one


def test_merge_refuses_a_missing_or_broken_file_in_one_line(tmp_path):
    a = _run(tmp_path / "run-a", {"ftddm": np.full(len(MAPS), 0.9)})
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    for bad in (tmp_path / "missing.json", broken):
        done = _merge(str(a), str(bad), "--out", str(tmp_path / "m.json"))
        assert done.returncode == 2, done.stderr
        assert str(bad) in done.stderr and "Traceback" not in done.stderr
        assert not (tmp_path / "m.json").exists()
