"""`mrsisr bench`: the side-by-side benchmark at tiny size on 2 maps."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from mrsisr.data import MRSIDataset, collate, fold_split, load_dataset
from mrsisr.eval.bench import run_bench, select_maps
from mrsisr.eval.scores import merge_shards
from mrsisr.metrics import batch_metrics
from mrsisr.pipelines import count_parameters
from mrsisr.recipes import load_recipe


def test_select_maps_is_seeded_bounded_and_its_prefixes_are_random():
    a = select_maps(50, 7, seed=3)
    assert len(set(a)) == 7 and all(0 <= i < 50 for i in a)
    assert a == select_maps(50, 7, seed=3) and a != select_maps(50, 7, seed=4)
    assert sorted(select_maps(5, None)) == sorted(select_maps(5, 9)) == [0, 1, 2, 3, 4]
    # a larger limit extends the list: the first maps stay the same
    assert select_maps(50, 20, seed=3)[:7] == a
    # the first 20 of 500 maps ordered subject by subject (100 each) reach most subjects,
    # where the first 20 in index order would all be the first subject's
    subjects = {i // 100 for i in select_maps(500, None, seed=0)[:20]}
    assert len(subjects) >= 4


def test_merge_undoes_rank_sharding():
    chosen = list(range(7))
    parts = [
        {k: np.array(chosen[r::3], float) for k in ("nrmse", "psnr", "ssim")} for r in range(3)
    ]
    merged = merge_shards(parts, len(chosen), 3)
    assert merged["ssim"].tolist() == [float(i) for i in chosen]


def test_bench_cli_tiny_on_two_maps(cli, cohort5, tmp_path):
    out = tmp_path / "bench"
    res = cli(
        "bench",
        "--models",
        "ftddm,tdpm,ddpm_respace",
        "--size",
        "tiny",
        "--untrained",
        "--data",
        str(cohort5),
        "--limit",
        "2",
        "--scales",
        "8",
        "--uq-samples",
        "2",
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    assert "UNTRAINED" in res.output and "ftddm" in res.output
    saved = json.loads((out / "results.json").read_text())
    rows = saved["rows"]
    assert [(r["model"], r["scale"]) for r in rows] == [
        (m, s) for s in (8,) for m in ("ftddm", "tdpm", "ddpm_respace", "lr_input")
    ]
    # The CPU defaults, as `mrsisr sr`'s: channels-last weights and 16 images per evaluation.
    assert saved["config"]["channels_last"] is True and saved["config"]["batch"] == 16
    for r in rows:  # the per-map scores behind each row, for pairing with other runs
        per_map = saved["scores"][f"{r['model']}@{r['scale']}"]["ssim"]
        assert len(per_map) == len(saved["maps"]) == 2
        assert np.mean(per_map) == pytest.approx(r["ssim_mean"])
    by = {(r["model"], r["scale"]): r for r in rows}
    for name, nfe in (("ftddm", 101), ("tdpm", 101), ("ddpm_respace", 100)):
        r = by[(name, 8)]
        assert r["nfe"] == nfe
        assert r["params"] == count_parameters(load_recipe(name, size="tiny").build())["total"]
        assert r["sec_per_slice"] > 0 and r["n_maps"] == 2
        for k in ("nrmse", "psnr", "ssim"):
            assert np.isfinite(r[f"{k}_mean"]) and r[f"{k}_std"] >= 0
    assert by[("ftddm", 8)]["p_ssim"] is None  # the reference
    assert 0 <= by[("tdpm", 8)]["p_ssim"] <= 1

    # The lr_input row is the zero-filled input scored on the same 2 maps, computed independently.
    subjects = load_dataset(cohort5)
    _, _, test_ids = fold_split([s.subject for s in subjects], 0)
    data = MRSIDataset(subjects, lr_size=8, subject_ids=test_ids)
    batch = collate([data[i] for i in select_maps(len(data), 2, 0)])
    scale = batch.max_value.view(-1, 1, 1, 1)
    ref = batch_metrics(batch.cond.lr.clamp(0, 1) * batch.cond.mask * scale, batch.x0 * scale)
    assert by[("lr_input", 8)]["ssim_mean"] == pytest.approx(float(ref["ssim"].mean()), rel=1e-9)
    assert by[("lr_input", 8)]["nrmse_std"] == pytest.approx(
        float(ref["nrmse"].numpy().std()), rel=1e-9
    )  # ddof 0

    with (out / "results.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(rows) and table[0]["model"] == "ftddm"
    png = (out / "grid.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_bench_pipelines_from_python_share_maps(cohort5):
    from mrsisr.pipelines.one_step import OneStepPipeline

    class Identity(torch.nn.Module):  # returns the LR input: must score exactly as lr_input
        def forward(self, cond, lambda_adv=0.0, metabolite=None):
            return cond.lr

    result = run_bench(
        [("identity", OneStepPipeline(Identity()))],
        data=cohort5,
        limit=3,
        scales=(4, 2),
        progress=False,
        uq_samples=0,
    )
    ident, lr = result.scores[("identity", 4)], result.scores[("lr_input", 4)]
    assert np.allclose(ident["ssim"], lr["ssim"]) and len(result.maps) == 3
    assert result.rows[1].p_ssim == 1.0  # identical scores: no evidence of a difference
    assert result.rows[0].p_ssim_lr == 1.0  # and the same against the LR input


def test_cached_rows_are_read_back_only_for_the_same_weights(cohort5, tmp_path, monkeypatch):
    """A resumed study re-scores a model whose weights were replaced since (a retrained
    initializer) and reads the others back."""
    import mrsisr.eval.runner as runner
    from mrsisr.eval.cache import ScoreCache
    from mrsisr.pipelines.one_step import OneStepPipeline

    class Gain(torch.nn.Module):
        def __init__(self, gain):
            super().__init__()
            self.gain = torch.nn.Parameter(torch.tensor(gain))

        def forward(self, cond, lambda_adv=0.0, metabolite=None):
            return cond.lr * self.gain

    real, calls = runner.evaluate, []
    monkeypatch.setattr(runner, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))

    def once(gain_b):
        cache = ScoreCache(tmp_path / ".demo.partial.json", {"study": "demo"})
        models = [("a", OneStepPipeline(Gain(1.0))), ("b", OneStepPipeline(Gain(gain_b)))]
        return run_bench(models, data=cohort5, limit=2, scales=(4,), progress=False,
                         uq_samples=0, cache=cache)  # fmt: skip

    first = once(1.0)
    assert len(calls) == 2  # a and b sampled
    calls.clear()
    same = once(1.0)
    assert len(calls) == 0  # both read back
    assert np.array_equal(same.scores[("b", 4)]["ssim"], first.scores[("b", 4)]["ssim"])
    calls.clear()
    changed = once(0.5)
    assert len(calls) == 1  # b's weights changed: scored again; a read back
    assert not np.allclose(changed.scores[("b", 4)]["ssim"], first.scores[("b", 4)]["ssim"])


class _Gain(torch.nn.Module):
    """A one-step "model": the LR input times a gain (deterministic, no network)."""

    def __init__(self, gain=1.0):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(gain))

    def forward(self, cond, lambda_adv=0.0, metabolite=None):
        return cond.lr * self.gain


def _slow(gain=1.0):
    """The same, counted as a 1000-step model (so `slow_limit` applies to it)."""
    from mrsisr.pipelines.one_step import OneStepPipeline

    class Slow(OneStepPipeline):
        nfe = 1000

    return Slow(_Gain(gain))


def test_slow_rows_sample_every_scale_in_the_same_calls(cohort5, monkeypatch):
    import mrsisr.eval.runner as runner
    from mrsisr.pipelines.one_step import OneStepPipeline

    real, joined = runner.evaluate_parts, []

    def spy(pipe, parts, **kw):
        joined.append([len(p.x0) for p in parts])
        return real(pipe, parts, **kw)

    monkeypatch.setattr(runner, "evaluate_parts", spy)
    models = [("fast", OneStepPipeline(_Gain(0.9))), ("slow", _slow(0.9))]
    kw = dict(data=cohort5, limit=3, slow_limit=1, scales=(8, 4, 2), progress=False, uq_samples=0)
    result = run_bench(models, **kw)
    assert joined == [[1, 1, 1]]  # one map per scale, sampled together
    for s in (8, 4, 2):  # each part scored on its own scale's first map
        slow, fast = result.scores[("slow", s)], result.scores[("fast", s)]
        assert len(slow["ssim"]) == 1 and slow["ssim"][0] == pytest.approx(fast["ssim"][0])
        row = next(r for r in result.rows if r.model == "slow" and r.scale == s)
        assert row.n_maps == 1 and row.sec_per_slice >= 0
    joined.clear()
    again = run_bench(models, batch=2, **kw)  # 3 maps do not fit in a call of 2: per scale
    assert joined == [] and again.scores[("slow", 4)]["ssim"] == pytest.approx(
        result.scores[("slow", 4)]["ssim"]
    )


def _noisy(gain=1.0):
    """A one-step "model" whose output varies with the generator, recording every call."""
    from mrsisr.pipelines.one_step import OneStepPipeline

    class Noisy(OneStepPipeline):
        calls: list = []

        def sample(self, cond, generator=None, progress=None, **kw):
            noise = torch.rand(cond.lr.shape, generator=generator, device=cond.lr.device)
            out = (cond.lr * self.network.gain + 0.1 * noise) * cond.mask
            if progress is not None:
                progress(1)  # a warm-up call stops here
            self.calls.append(out.clone())
            return out

    return Noisy(_Gain(gain))


def test_uncertainty_of_every_scale_is_drawn_in_one_call_with_the_scored_draw(cohort5):
    pipe = _noisy(0.9)
    kw = dict(data=cohort5, limit=2, scales=(8, 4, 2), progress=False, uq_samples=3)
    result = run_bench([("noisy", pipe)], **kw)
    sizes = [len(c) for c in pipe.calls]
    assert sizes == [2, 2, 2, 6]  # one call per scale, then 2 more draws for each of 3 scales
    extra = pipe.calls[-1]
    for j, s in enumerate((8, 4, 2)):
        grid = result.grid[s]
        peak = float(grid["gt"].max())  # the map's maximum: x0 is divided by it
        scored = torch.from_numpy(grid["noisy"])[None]
        draws = torch.cat([scored, extra[2 * j : 2 * j + 2, 0] * peak])
        assert np.allclose(grid["std"], draws.std(0).numpy(), atol=1e-5)
        assert grid["std_model"] == "noisy" and grid["std"].max() > 0
    # batch 4: the six extra draws in two calls, with a progress bar
    pipe.calls.clear()
    again = run_bench([("noisy", pipe)], batch=4, **(kw | {"progress": True}))
    assert [len(c) for c in pipe.calls][-2:] == [4, 2]
    assert all(again.grid[s]["std"].max() > 0 for s in (8, 4, 2))


def test_joint_slow_rows_are_kept_for_every_scale_at_once(cohort5, tmp_path, monkeypatch):
    import mrsisr.eval.runner as runner
    from mrsisr.eval.cache import ScoreCache
    from mrsisr.pipelines.one_step import OneStepPipeline

    real, joined = runner.evaluate_parts, []
    monkeypatch.setattr(runner, "evaluate_parts", lambda *a, **k: joined.append(1) or real(*a, **k))
    path = tmp_path / ".demo.partial.json"

    def once(models, **kw):
        cache = ScoreCache(path, {"study": "demo"})
        return run_bench(models, data=cohort5, limit=2, slow_limit=1, scales=(8, 4),
                         progress=False, cache=cache, **kw)  # fmt: skip

    models = [("fast", OneStepPipeline(_Gain(0.9))), ("slow", _slow(0.7))]
    first = once(models, uq_samples=2)
    assert joined == [1]
    assert {k.split("|")[0] for k in ScoreCache(path, {"study": "demo"}).entries} == {
        "fast",
        "slow",
    }
    # the figure shows each scale's own map, the slow model's panel from the joint call
    for s in (8, 4):
        grid = first.grid[s]
        assert np.allclose(grid["slow"], grid["fast"] * 0.7 / 0.9, atol=1e-5)
    joined.clear()
    again = once(models, uq_samples=0)
    assert joined == []  # every scale read back, none drawn again
    assert np.array_equal(again.scores[("slow", 4)]["ssim"], first.scores[("slow", 4)]["ssim"])
    # rows drawn one scale at a time are not taken for joint ones, nor the reverse
    joined.clear()
    per_scale = once(models, uq_samples=0, batch=1)
    assert joined == [] and len(per_scale.scores[("slow", 8)]["ssim"]) == 1
    keys = ScoreCache(path, {"study": "demo"}).entries
    assert sum(k.startswith("slow|") for k in keys) == 2  # same keys, replaced by the new digest


def test_evaluate_parts_scores_each_part_as_evaluate_would(cohort5):
    from mrsisr.eval.scores import cat_batches, evaluate, evaluate_parts
    from mrsisr.pipelines.one_step import OneStepPipeline

    subjects = load_dataset(cohort5)
    parts = [collate([MRSIDataset(subjects, lr_size=64 // s)[i] for i in range(2)]) for s in (8, 2)]
    joined = cat_batches(parts)
    assert len(joined.x0) == 4 and joined.cond.scale.tolist() == [8, 8, 2, 2]
    assert joined.subject == parts[0].subject + parts[1].subject
    pipe = OneStepPipeline(_Gain(0.8))
    got = evaluate_parts(pipe, parts, batch=3)
    for part, g in zip(parts, got, strict=True):
        alone = evaluate(pipe, part)
        for k in alone.values:
            assert np.allclose(g.values[k], alone.values[k]), k
        assert torch.equal(g.pred, alone.pred)
    assert sum(g.seconds for g in got) > 0


def test_fingerprint_follows_weights_and_settings_not_the_device():
    from mrsisr.eval.cache import fingerprint

    a = load_recipe("ftddm", size="tiny").build()
    b = load_recipe("ftddm", size="tiny", overrides={"sampler": {"tau_d": 0.5}}).build()
    b.load_state_dict(a.state_dict())
    assert fingerprint(a) != fingerprint(b)  # same weights, another sampler setting
    c = load_recipe("ftddm", size="tiny").build()
    c.load_state_dict(a.state_dict())
    assert fingerprint(c) == fingerprint(a)
    with torch.no_grad():
        next(c.parameters()).add_(1e-3)
    assert fingerprint(c) != fingerprint(a)  # retrained


@pytest.mark.parametrize("recipe", ["tdpm", "munet_fs_cwgan"])
def test_fingerprint_leaves_out_training_only_critics(recipe):
    """A discriminator is drawn afresh at every load (no weights file holds it): two loads of the
    same weights must share one fingerprint, or every TDPM row would be sampled again each run."""
    from mrsisr.eval.cache import fingerprint
    from mrsisr.stages import training_stages

    a, b = (load_recipe(recipe, size="tiny").build() for _ in range(2))
    critics = [m for s in training_stages(a) for m in s.critic_modules.values()]
    assert critics  # the recipe has one
    keep = {
        k: v for k, v in a.state_dict().items() if "discriminator" not in k and "critic" not in k
    }
    b.load_state_dict(keep, strict=False)
    assert not all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values())
    )
    assert fingerprint(a) == fingerprint(b)
    from mrsisr.eval.studies.base import ConditionedScale

    assert fingerprint(ConditionedScale(a, 4.0)) == fingerprint(ConditionedScale(b, 4.0))  # wrapped
    if recipe == "munet_fs_cwgan":  # trained without its critic: the critic is not used either
        fidelity = {"pipeline": {"lambda_adv_range": [0.0, 0.0]}}
        c, d = (load_recipe(recipe, size="tiny", overrides=fidelity).build() for _ in range(2))
        d.load_state_dict(
            {k: v for k, v in c.state_dict().items() if "critic" not in k}, strict=False
        )
        assert fingerprint(c) == fingerprint(d)
    with torch.no_grad():  # the generator (or MUNet) itself still counts
        next(p for m in training_stages(a)[-1].modules.values() for p in m.parameters()).add_(1e-3)
    assert fingerprint(a) != fingerprint(b)


def test_slow_models_run_on_the_first_maps_and_pair_on_them(cohort5, tmp_path):
    from mrsisr.pipelines.one_step import OneStepPipeline

    class Identity(torch.nn.Module):
        def forward(self, cond, lambda_adv=0.0, metabolite=None):
            return cond.lr

    slow = OneStepPipeline(Identity())
    slow.nfe = 1000  # a stand-in for DDPM-1000: only its NFE matters here
    result = run_bench(
        [("fast", OneStepPipeline(Identity())), ("slow", slow)],
        data=cohort5,
        limit=8,
        slow_limit=1,
        scales=(4,),
        progress=False,
        uq_samples=0,
    )
    rows = {r.model: r for r in result.rows}
    assert rows["fast"].n_maps == 8 and rows["slow"].n_maps == 1 and rows["lr_input"].n_maps == 8
    np.testing.assert_allclose(
        result.scores[("slow", 4)]["ssim"], result.scores[("fast", 4)]["ssim"][:1]
    )
    assert rows["slow"].p_ssim == 1.0 and rows["slow"].p_ssim_lr == 1.0
    # the figure shows a map both models scored: the first (not the largest of all 8)
    g = result.grid[4]
    assert "slow" in g and "fast" in g
    assert (tmp_path / "b" / "grid.png") in result.save(tmp_path / "b")
    assert g["title"] in {f"{s} {m} slice {k}" for s, m, k in result.maps[:1]}


def test_bench_missing_weights_is_one_line_and_writes_nothing(cli, cohort5, tmp_path):
    out = tmp_path / "none"
    res = cli(
        "bench", "--models", "ftddm", "--size", "tiny", "--data", str(cohort5), "--out", str(out)
    )
    assert res.exit_code == 2
    assert "no shipped 'tiny' weights for ftddm" in res.output and "Traceback" not in res.output
    assert not out.exists()
    res = cli("bench", "--models", "ftddm,nope", "--size", "tiny", "--untrained", "--out", str(out))
    assert res.exit_code == 2 and "nope" in res.output
    res = cli("bench", "--models", "ftddm", "--scales", "8,3", "--untrained", "--out", str(out))
    assert res.exit_code == 2 and "--scales" in res.output


@pytest.mark.slow  # two processes; DDP training is covered in the default run
def test_bench_under_torchrun_shards_maps_and_matches_one_process(cohort5, tmp_path):
    import subprocess
    import sys

    args = ["--models", "munet_fs_cwgan", "--data", str(cohort5), "--limit", "5", "--scales", "4"]
    one = run_bench(["munet_fs_cwgan"], data=cohort5, limit=5, scales=(4,), progress=False)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "mrsisr",
        "bench",
        *args,
        "--out",
        str(tmp_path / "two"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "two" / "results.json").read_text())
    assert data["config"]["world_size"] == 2
    for row, ref in zip(data["rows"], one.rows):
        assert row["model"] == ref.model and row["n_maps"] == ref.n_maps == 5
        assert row["ssim_mean"] == pytest.approx(ref.ssim_mean, abs=1e-6)
        assert row["psnr_std"] == pytest.approx(ref.psnr_std, abs=1e-4)


@pytest.mark.slow
def test_bench_under_torchrun_with_more_ranks_than_maps(cohort5, tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "mrsisr", "bench", "--models", "munet_fs_cwgan", "--data", str(cohort5)]
    cmd += ["--limit", "1", "--scales", "4", "--out", str(tmp_path / "two")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "two" / "results.json").read_text())["rows"]
    assert [(r["model"], r["n_maps"]) for r in rows] == [("munet_fs_cwgan", 1), ("lr_input", 1)]


def test_channels_last_bench_scores_the_same(cohort5):
    from mrsisr.recipes import load_recipe

    overrides = {"sampler.type": "respace", "sampler.steps": 3}
    scores = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        pipe = load_recipe("ftddm", size="tiny", overrides=overrides).build().eval()
        result = run_bench(
            [("ftddm", pipe)],
            data=cohort5,
            limit=2,
            scales=(4,),
            progress=False,
            uq_samples=0,
            baseline=False,
            channels_last=channels_last,
        )
        scores.append(result.scores[("ftddm", 4)]["ssim"])
        assert result.config["channels_last"] is channels_last
    assert np.allclose(scores[0], scores[1], atol=1e-5)
