"""`--precision` and `--compile`: training and sampling at reduced precision, compiled, on CPU."""

from __future__ import annotations

import json

import pytest
import torch
from test_train import ns
from test_zoo import synthetic_batch

from mrsisr.errors import MrsisrError
from mrsisr.recipes import load_recipe
from mrsisr.runtime import Accelerated, accelerate, autocast, compile_modules, grad_scaler
from mrsisr.train.engine import TrainConfig, Trainer


def _train(out, steps=2, resume=False, **kw):
    train, val = ns["make_data"]()
    cfg = TrainConfig(steps=steps, batch_size=2, seed=0, checkpoint_every=1, validate_every=steps,
                      val_batches=1, lr=1e-3, **kw)  # fmt: skip
    pipe = ns["make_pipeline"]()
    results = Trainer(pipe, ns["RECIPE"], train, val, out, cfg, progress=False).run(resume=resume)
    return pipe, results


@pytest.mark.slow  # reduced precision and tracing are slow on a CPU without bf16 units
def test_bf16_training_runs_and_keeps_float32_weights(tmp_path):
    pipe, (result,) = _train(tmp_path / "bf16", precision="bf16")
    assert result.final_loss is not None and result.final_loss == result.final_loss  # not NaN
    assert all(p.dtype == torch.float32 for p in pipe.parameters())
    card = json.loads((tmp_path / "bf16" / "card.json").read_text())
    assert card["config"]["precision"] == "bf16"


def test_fp16_training_checkpoints_its_grad_scaler_and_resumes_exactly(tmp_path):
    _train(tmp_path / "a", steps=2, precision="fp16")
    state = json.loads((tmp_path / "a/stages/denoiser/latest/state.json").read_text())
    scaler = state["grad_scalers"]["main"]
    assert scaler["scale"] > 0 and "_growth_tracker" in scaler
    a, _ = _train(tmp_path / "a", steps=4, precision="fp16", resume=True)
    b, _ = _train(tmp_path / "b", steps=4, precision="fp16")
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=k)


def test_fp16_run_refuses_to_resume_at_another_precision(tmp_path):
    _train(tmp_path / "a", steps=2, precision="fp16")
    with pytest.raises(MrsisrError, match="precision"):
        _train(tmp_path / "a", steps=3, resume=True)


@pytest.mark.slow  # reduced precision and tracing are slow on a CPU without bf16 units
def test_compiled_training_matches_eager_training(tmp_path):
    a, _ = _train(tmp_path / "eager")
    b, _ = _train(tmp_path / "compiled", compile="aot_eager")
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=k)


def test_unknown_precision_or_backend_is_refused_in_one_line():
    with pytest.raises(MrsisrError, match="`precision` 'fp8'.*fp32, bf16, fp16"):
        TrainConfig(precision="fp8")
    with pytest.raises(MrsisrError, match="`compile` 'tvm'"):
        TrainConfig(compile="tvm")


def test_autocast_and_scaler_per_precision():
    lin = torch.nn.Linear(3, 3)
    with autocast("cpu", "fp32"):
        assert lin(torch.ones(1, 3)).dtype == torch.float32
    with autocast("cpu", "bf16"):
        assert lin(torch.ones(1, 3)).dtype == torch.bfloat16
    assert grad_scaler("cpu", "bf16") is None
    assert isinstance(grad_scaler("cpu", "fp16"), torch.amp.GradScaler)


def test_emulated_low_precision_on_a_cpu_is_said_once_on_one_line(monkeypatch, capsys):
    import warnings

    import mrsisr.runtime as rt

    monkeypatch.setattr(rt, "_WARNED", set())
    monkeypatch.setattr(rt, "native_low_precision", lambda p: p == "fp32")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(3):  # e.g. every training step
            with autocast("cpu", "bf16"):
                pass
        with autocast("cpu", "fp32"):
            pass
    notes = [w for w in seen if issubclass(w.category, rt.PrecisionWarning)]
    assert len(notes) == 1 and "no native bf16" in str(notes[0].message)
    from mrsisr.cli import _show_warning  # how the command line prints it

    _show_warning(notes[0].message, notes[0].category, "runtime.py", 1)
    err = capsys.readouterr().err
    assert err.startswith("warning: this CPU has no native bf16") and err.count("\n") == 1
    monkeypatch.setattr(rt, "native_low_precision", lambda p: True)
    monkeypatch.setattr(rt, "_WARNED", set())
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with autocast("cpu", "bf16"):
            pass
    assert not [w for w in seen if issubclass(w.category, rt.PrecisionWarning)]
    assert rt.native_low_precision("fp32") is True


def _tiny_ftddm():
    torch.manual_seed(0)
    over = {"sampler.type": "respace", "sampler.steps": 3}
    return load_recipe("ftddm", size="tiny", overrides=over).build().eval()


def test_accelerated_pipeline_keeps_the_contract_and_stays_close_to_fp32():
    batch = synthetic_batch(2)
    pipe = _tiny_ftddm()
    ref = pipe.sample(batch.cond, generator=torch.Generator().manual_seed(0))
    fast = accelerate(pipe, "cpu", "bf16")
    assert isinstance(fast, Accelerated) and fast.nfe == pipe.nfe and fast.recipe is pipe.recipe
    seen = []
    out = fast.sample(batch.cond, generator=torch.Generator().manual_seed(0), progress=seen.append)
    assert out.dtype == torch.float32 and sum(seen) == pipe.nfe
    assert (out - ref).abs().max() < 0.05  # bf16 keeps ~3 significant digits per evaluation
    assert fast.parts().keys() == pipe.parts().keys()
    assert accelerate(pipe, "cpu", "fp32") is pipe


@pytest.mark.slow  # reduced precision and tracing are slow on a CPU without bf16 units
def test_compiled_pipeline_samples_the_same():
    batch = synthetic_batch(2)
    pipe = _tiny_ftddm()
    ref = pipe.sample(batch.cond, generator=torch.Generator().manual_seed(0))
    assert compile_modules(pipe, "aot_eager") == len([m for m, _ in pipe.parts().values()])
    out = pipe.sample(batch.cond, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert not any("_orig_mod" in k for k in pipe.state_dict())  # weight files are unchanged


def test_bench_cli_precision(cli, cohort5, tmp_path):
    res = cli("bench", "--models", "ftddm", "--size", "tiny", "--untrained", "--data",
              str(cohort5), "--limit", "1", "--scales", "8", "--set", "sampler.type=respace",
              "--set", "sampler.steps=2", "--precision", "bf16", "--samples", "0",
              "--out", str(tmp_path / "b"))  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "b" / "results.json").read_text())
    assert data["config"]["precision"] == "bf16" and data["config"]["compile"] is None
    res = cli("bench", "--models", "ftddm", "--precision", "fp64", "--out", str(tmp_path / "c"))
    assert res.exit_code == 2 and "--precision 'fp64'" in res.output
    assert not (tmp_path / "c").exists()


def test_cpu_adam_is_fused_and_agrees_with_the_loop():
    """The engine's CPU Adam (fused) gives the weights of Adam's per-parameter loop to float
    rounding."""
    import copy

    from mrsisr.registries import BACKBONES
    from mrsisr.runtime import optimizer_options

    assert optimizer_options("cpu") == {"fused": True}
    torch.manual_seed(0)
    net = BACKBONES.build("unet", model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                          attention_resolutions=(16,), num_heads=1, image_size=16)  # fmt: skip
    nets = [copy.deepcopy(net), copy.deepcopy(net)]
    opts = [
        torch.optim.Adam(nets[0].parameters(), lr=1e-3, betas=(0.5, 0.9), weight_decay=1e-4,
                         foreach=False),
        torch.optim.Adam(nets[1].parameters(), lr=1e-3, betas=(0.5, 0.9), weight_decay=1e-4,
                         **optimizer_options("cpu")),
    ]  # fmt: skip
    for step in range(5):
        for m, opt in zip(nets, opts):
            opt.zero_grad()
            sum(p.square().sum() * (step + 1) for p in m.parameters()).backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert not torch.equal(next(net.parameters()), next(nets[0].parameters()))  # it did train
