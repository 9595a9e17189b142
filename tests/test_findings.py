"""benchmarks/findings.py: each paper finding judged from a study's per-map scores."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("findings", ROOT / "benchmarks" / "findings.py")
findings = importlib.util.module_from_spec(spec)
sys.modules["findings"] = findings
spec.loader.exec_module(findings)


def _study(rows: dict[str, np.ndarray], scale: int = 4, metric: str = "ssim") -> dict:
    maps = [["sub-01", "NAA", i] for i in range(len(next(iter(rows.values()))))]
    return {
        "rows": [],
        "scores": {
            f"{k}@{scale}": {"maps": maps, metric: [float(x) for x in v]} for k, v in rows.items()
        },
    }


def test_verdicts_follow_the_paired_test():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.8, 0.9, 30)
    f = findings.Finding("x", "Table 9", "a beats b", 4, "ssim", "a", "b", ">", 0.9, 0.8)
    better = _study({"a": base + 0.01 + rng.normal(0, 0.002, 30), "b": base})
    worse = _study({"a": base - 0.01 + rng.normal(0, 0.002, 30), "b": base})
    same = _study({"a": base + rng.normal(0, 0.01, 30), "b": base + rng.normal(0, 0.01, 30)})
    assert findings.judge(f, better)["verdict"] == "agrees"
    assert findings.judge(f, worse)["verdict"] == "disagrees"
    judged = findings.judge(f, same)
    assert judged["verdict"] == "not significant" and judged["n"] == 30
    assert findings.judge(f, None)["verdict"].startswith("not measured")
    assert findings.judge(f, {"rows": []})["verdict"].startswith("not measured")
    # a study run on too few maps (an old 4-map run) is not judged, however clear its rows
    small = better | {"config": {"limit": 4}}
    assert findings.judge(f, small, min_maps=50)["verdict"].startswith("not measured at full size")
    assert findings.judge(f, small | {"config": {"limit": 50}}, min_maps=50)["verdict"] == "agrees"
    assert findings.judge(f, small | {"config": {"limit": 0}}, min_maps=50)["verdict"] == "agrees"
    # the maps actually scored win over the requested limit (a small cohort, "all maps")
    rows = {"rows": [{"n_maps": 12, "nfe": 0}, {"n_maps": 4, "nfe": 1000}], "config": {"limit": 0}}
    assert findings.study_maps(rows) == 12
    assert findings.judge(f, better | rows, min_maps=50)["verdict"].startswith("not measured at")
    assert findings.study_maps({}) is None
    # "as good as": agreement is the absence of a significant difference
    near = findings.Finding("x", "Fig. 9", "a matches b", 4, "ssim", "a", "b", "≈")
    assert findings.judge(near, same)["verdict"] == "agrees (no significant difference)"
    assert findings.judge(near, better)["verdict"] == "disagrees"
    # lower is better for LPIPS: a lower a agrees with "a beats b"
    lp = findings.Finding("x", "Fig. 7", "sharper", 4, "lpips_vgg", "a", "b")
    lower = _study({"a": base - 0.05, "b": base}, metric="lpips_vgg")
    assert findings.judge(lp, lower)["verdict"] == "agrees"


def test_times_lists_only_full_size_studies(tmp_path):
    def study(name, n):
        rows = [{"n_maps": n, "nfe": 101, "sec_per_slice": 36.0}, {"n_maps": n, "nfe": 0}]
        (tmp_path / f"study-small-{name}.json").write_text(json.dumps({"rows": rows}))

    study("solver", 50)
    study("scale", 4)
    out = findings.times(tmp_path, "small", min_maps=50)
    assert "| solver | 1 | 50 | - | 0.5 h |" in out and "| scale |" not in out
    assert "| scale | 1 | 4 |" in findings.times(tmp_path, "small")


def test_rows_are_paired_on_the_maps_they_share():
    a = {"maps": [["s", "NAA", 0], ["s", "NAA", 1], ["s", "NAA", 2]], "ssim": [0.5, 0.6, 0.7]}
    b = {"maps": [["s", "NAA", 2], ["s", "NAA", 0]], "ssim": [0.1, 0.3]}  # fewer, other order
    x, y = findings.paired({"scores": {"a@4": a, "b@4": b}}, "a", "b", 4, "ssim")
    assert x.tolist() == [0.5, 0.7] and y.tolist() == [0.3, 0.1]


def test_every_finding_names_rows_its_study_makes():
    """The rows a finding compares are the names the studies give them (at default settings,
    with every initializer shipped)."""
    from mrsisr.eval.studies import ABLATIONS

    k = (100, 50, 20)
    made = {
        "ablation": set(ABLATIONS),
        "truncation": {f"{m}-{s}" for m in ("respace", "dpm_solver_pp", "tdpm", "ftddm") for s in k}
        | {"ddpm-1000"},
        "solver": {"ftddm-ancestral-100"}
        | {f"ftddm-dpm_solver_pp-{s}" for s in (50, 20, 10)}
        | {"ftddm-t50-ancestral-50", "ftddm-t20-ancestral-20"}
        | {f"ftddm-t50-dpm_solver_pp-{s}" for s in (20, 10)}
        | {"ftddm-t20-dpm_solver_pp-10"},
        "scale": {f"ftddm-s{s:.2f}" for s in (2.0, 64 / 24, 4.0, 64 / 12, 8.0)},
        "sharpness": {f"ftddm-tau_d{t}" for t in ("0", "0.3", "0.6", "0.9", "1")},
    }
    for f in findings.FINDINGS:
        assert {f.a, f.b} <= made[f.study], f
        assert f.relation in {">", "≈"} and f.scale in {2, 4, 8}


def test_cli_writes_the_table(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.uniform(0.8, 0.9, 12)
    study = _study({"diffusion_only": base + 0.02, "flow_only": base})
    (tmp_path / "study-small-ablation.json").write_text(json.dumps(study))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "findings.py"), "--results", str(tmp_path)]
    res = subprocess.run(cmd + ["--json", str(tmp_path / "f.json")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if "diffusion only beats flow only" in x)
    assert "0.929 vs 0.910" in line and "**agrees**" in line and "| 12 |" in line
    out = json.loads((tmp_path / "f.json").read_text())["findings"]
    assert {r["verdict"] for r in out if r["study"] == "truncation"} == {
        "not measured (no results file)"
    }


def test_study_times_sum_each_rows_sampling_time(tmp_path):
    rows = [
        {"variant": "a", "nfe": 101, "n_maps": 50, "sec_per_slice": 36.0},
        {"variant": "ddpm-1000", "nfe": 1000, "n_maps": 20, "sec_per_slice": 360.0},
        {"variant": "lr_input", "nfe": 0, "n_maps": 50, "sec_per_slice": 0.0},
    ]
    (tmp_path / "study-small-solver.json").write_text(json.dumps({"rows": rows}))
    out = findings.times(tmp_path, "small")
    # 50 x 36 s + 20 x 360 s = 9000 s = 2.5 h; the LR input is not a model
    assert "| solver | 2 | 50 | 20 | 2.5 h |" in out
    assert "truncation" not in out  # no results file: no row
