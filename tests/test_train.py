"""Training engine: losses go down, run folder, exact resume after SIGKILL, DDP on 2 CPU processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]

# A tiny pipeline and a synthetic 6-subject cohort, built the same way in this process and in
# the subprocesses below (the code is shared as text so the kill/resume run is self-contained).
SETUP = textwrap.dedent(
    """
    import numpy as np, torch
    from mrsisr.data import MRSIDataset, Subject
    from mrsisr.pipelines import DiffusionPipeline
    from mrsisr.registries import BACKBONES, INITIALIZERS, SAMPLERS, SCHEDULES
    from mrsisr.recipes import Recipe

    def make_subjects(n=6, size=16):
        rng = np.random.default_rng(0)
        subs = []
        for i in range(n):
            m = np.zeros((2, size, size), np.float32)
            m[:, 3:13, 3:13] = rng.uniform(0.5, 2.0, (2, 10, 10)).astype(np.float32)
            t1 = rng.uniform(0.2, 1.0, (2, size, size)).astype(np.float32)
            maps = {"NAA": m, "tCho": m[:, ::-1].copy()}
            masks = {k: v > 0 for k, v in maps.items()}
            subs.append(Subject(f"s{i}", maps, masks, t1, t1[:, :, ::-1].copy(), shape=(2, size, size)))
        return subs

    def make_pipeline(seed=0, **kw):
        torch.manual_seed(seed)
        unet = BACKBONES.build("unet", model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                               attention_resolutions=(), num_heads=1, image_size=16)
        return DiffusionPipeline(SCHEDULES.build("cosine"), INITIALIZERS.build("gaussian"), unet,
                                 SAMPLERS.build("ancestral"), t_start=100, **kw)

    RECIPE = Recipe(name="tiny_test", size="tiny", source=None, meta={"title": "test"}, tables={})

    def make_data():
        subs = make_subjects()
        train = MRSIDataset(subs[:4], metabolites=("NAA", "tCho"), lr_sizes=(4, 8), augment=True, seed=0)
        val = MRSIDataset(subs[4:], metabolites=("NAA", "tCho"), lr_sizes=(4, 8), seed=0)
        return train, val
    """
)
ns: dict = {}
exec(SETUP, ns)


def config(**kw):
    from mrsisr.train.engine import TrainConfig

    base = dict(
        steps=8, batch_size=2, seed=0, checkpoint_every=2, validate_every=4, val_batches=2, lr=1e-3
    )
    base.update(kw)
    return TrainConfig(**base)


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "weights.safetensors"))


def test_run_folder_card_and_weights(tmp_path):
    from mrsisr.train.engine import Trainer
    from mrsisr.weights import load_weights_into

    train, val = ns["make_data"]()
    pipe = ns["make_pipeline"]()
    results = Trainer(
        pipe, ns["RECIPE"], train, val, tmp_path / "run", config(), progress=False
    ).run()
    (res,) = results
    assert res.name == "denoiser" and res.steps == 8 and np.isfinite(res.final_loss)
    assert res.best_val_loss is not None and np.isfinite(res.best_val_loss)
    run = tmp_path / "run"
    assert (run / "stages/denoiser/latest/state.json").is_file()
    assert (run / "stages/denoiser/best/state.json").is_file()
    card = json.loads((run / "card.json").read_text())
    assert card["recipe"] == "tiny_test" and card["stages"][0]["steps"] == 8
    assert card["device"].startswith("cpu") and card["wall_time_s"] > 0
    # the exported weights load into a fresh pipeline and equal the trained (EMA) weights
    fresh = ns["make_pipeline"](seed=1)
    load_weights_into({"denoiser": fresh.denoiser}, run)
    for a, b in zip(pipe.denoiser.state_dict().values(), fresh.denoiser.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_existing_run_needs_resume(tmp_path):
    from mrsisr.errors import MrsisrError
    from mrsisr.train.engine import Trainer

    train, val = ns["make_data"]()
    Trainer(
        ns["make_pipeline"](), ns["RECIPE"], train, None, tmp_path, config(steps=2), progress=False
    ).run()
    with pytest.raises(MrsisrError, match="already holds a run; pass `resume`"):
        Trainer(
            ns["make_pipeline"](),
            ns["RECIPE"],
            train,
            None,
            tmp_path,
            config(steps=2),
            progress=False,
        ).run()


def test_loss_goes_down_on_a_fixed_batch():
    from mrsisr.data import collate
    from mrsisr.stages import training_stages

    train, _ = ns["make_data"]()
    batch = collate([train[i] for i in range(4)])
    pipe = ns["make_pipeline"]()
    (stage,) = training_stages(pipe)
    opt = torch.optim.Adam(stage.modules["denoiser"].parameters(), lr=3e-3)

    def fixed_loss():
        return stage.loss(batch, torch.Generator().manual_seed(0))

    before = float(fixed_loss().detach())
    for _ in range(30):
        loss = fixed_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(fixed_loss().detach()) < 0.7 * before


KILL_SCRIPT = SETUP + textwrap.dedent(
    """
    import os, signal, sys
    from mrsisr.train.engine import TrainConfig, Trainer
    out, kill_at, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    def on_step(stage, step):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    train, val = make_data()
    # the paper's per-iteration decay, with warm-up, and the x0 loss weighting: both must resume exactly
    cfg = TrainConfig(steps=8, batch_size=2, seed=0, checkpoint_every=2, validate_every=4, val_batches=2, lr=1e-3,
                      lr_schedule="linear", warmup_steps=2)
    pipe = make_pipeline(loss_weighting="x0")
    Trainer(pipe, RECIPE, train, val, out, cfg, progress=False, on_step=on_step).run(resume=resume)
    """
)


def run_script(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    killed = run_script(tmp_path / "a", 5, 0)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    state = json.loads((tmp_path / "a/stages/denoiser/latest/state.json").read_text())
    assert state["step"] == 4  # the last checkpoint before the kill at step 5
    # the checkpoint records the schedule; step 3 (0-based) of 8 after 2 warm-up steps: 1e-3 * 5/6
    assert state["lr_schedule"]["type"] == "linear"
    assert state["lr_schedule"]["last_lr"]["main"] == pytest.approx(1e-3 * 5 / 6)
    assert not (tmp_path / "a/weights.safetensors").exists()
    resumed = run_script(tmp_path / "a", -1, 1)
    assert resumed.returncode == 0, resumed.stderr
    straight = run_script(tmp_path / "b", -1, 0)
    assert straight.returncode == 0, straight.stderr
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)


DDP_WORKER = SETUP + textwrap.dedent(
    """
    import os, sys
    from safetensors.torch import save_file
    from mrsisr.train.engine import TrainConfig, Trainer
    out = sys.argv[1]
    train, val = make_data()
    cfg = TrainConfig(steps=4, batch_size=2, seed=0, checkpoint_every=2, validate_every=4, val_batches=1, lr=1e-3)
    pipe = make_pipeline(seed=int(os.environ["RANK"]))  # different init per rank: DDP must sync it
    Trainer(pipe, RECIPE, train, val, out, cfg, progress=False).run()
    sd = {k: v.contiguous() for k, v in pipe.denoiser.state_dict().items()}
    save_file(sd, f"{out}/rank{os.environ['RANK']}.safetensors")
    """
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_processes_end_identical(tmp_path):
    port = free_port()
    procs = []
    for rank in range(2):
        env = dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            OMP_NUM_THREADS="1",
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", DDP_WORKER, str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    r0 = load_file(str(tmp_path / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "rank1.safetensors"))
    for k in r0:
        torch.testing.assert_close(r0[k], r1[k], rtol=0, atol=0)
    assert (tmp_path / "weights.safetensors").is_file()  # rank 0 wrote the run


def test_load_weights_under_another_part_name(tmp_path):
    from torch import nn

    from mrsisr.errors import CheckpointError
    from mrsisr.weights import load_weights_into, save_weights

    torch.manual_seed(0)
    trained, fresh = nn.Conv2d(2, 3, 3), nn.Conv2d(2, 3, 3)
    path = save_weights({"network": trained}, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="no weights for part 'pre_network'; it has: network"):
        load_weights_into({"pre_network": fresh}, path)
    load_weights_into({"pre_network": fresh}, path, rename={"pre_network": "network"})
    torch.testing.assert_close(fresh.weight, trained.weight)


def _two_step_source(tmp_path):
    """Data and a 2-step run of the analytic test recipe to start other runs from."""
    from mrsisr.train.engine import Trainer

    train, val = ns["make_data"]()
    src = tmp_path / "src"
    Trainer(
        ns["make_pipeline"](seed=0), ns["RECIPE"], train, val, src, config(steps=2), progress=False
    ).run()
    return train, val, src


def test_init_fine_tunes_from_given_weights(tmp_path):
    """--init loads a stage's weights and then trains it: with lr = 0 the result is the source."""
    from mrsisr.train.engine import Trainer

    train, val, src = _two_step_source(tmp_path)
    out = tmp_path / "tuned"
    trainer = Trainer(
        ns["make_pipeline"](seed=1), ns["RECIPE"], train, val, out, config(steps=2, lr=0.0),
        init={"denoiser": src}, progress=False,
    )  # fmt: skip
    (result,) = trainer.run()
    assert result.initialized_from == str(src) and result.steps == 2
    a, b = final_weights(src), final_weights(out)
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    card = json.loads((out / "card.json").read_text())
    assert card["stages"][0]["initialized_from"] == str(src)


def test_init_adapt_adds_the_s_embedding_without_changing_the_network(tmp_path):
    """A UNet without the s-embedding grown into one with it computes the same ε for any s."""
    from mrsisr.errors import CheckpointError
    from mrsisr.registries import BACKBONES
    from mrsisr.types import Condition
    from mrsisr.weights import load_weights_into, save_weights

    kw = dict(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(),
              num_heads=1, image_size=16)  # fmt: skip
    torch.manual_seed(0)
    small = BACKBONES.build("unet", use_scale=False, **kw).eval()
    big = BACKBONES.build("unet", use_scale=True, **kw).eval()
    with torch.no_grad():  # a fresh UNet's output layers are zero: give it a real function
        for p in small.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = save_weights({"denoiser": small}, tmp_path / "ddpm.safetensors")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights_into({"denoiser": big}, path)
    load_weights_into({"denoiser": big}, path, adapt=True)
    g = torch.Generator().manual_seed(1)
    x, img = torch.randn(3, 1, 16, 16, generator=g), torch.rand(3, 1, 16, 16, generator=g)
    t = torch.tensor([5, 50, 500])

    def cond(s):
        return Condition(mask=torch.ones_like(img), lr=img, t1=img, flair=img.flip(-1),
                         scale=torch.full((3,), s))  # fmt: skip

    with torch.no_grad():
        ref = small(x, t, cond(4.0))
        assert ref.abs().max() > 1e-3
        for s in (2.0, 8.0):
            torch.testing.assert_close(big(x, t, cond(s)), ref)
        # the zero-padded columns are what hides s: once they move, s matters
        for p in big.parameters():
            p.add_(1e-2 * torch.randn(p.shape, generator=g))
        assert not torch.allclose(big(x, t, cond(2.0)), big(x, t, cond(8.0)))
    # growing is one way only: the larger network does not fit into the smaller one
    back = save_weights({"denoiser": big}, tmp_path / "ftddm.safetensors")
    with pytest.raises(CheckpointError, match="target network lacks"):
        load_weights_into({"denoiser": small}, back, adapt=True)
    # nor does a network of another width: only new input columns are added
    wide = BACKBONES.build("unet", use_scale=True, **{**kw, "model_channels": 16})
    with pytest.raises(CheckpointError, match="another width"):
        load_weights_into({"denoiser": wide}, path, adapt=True)


def test_init_adapt_drops_the_input_channels_a_table3_unet_does_not_read():
    """FTDDM's UNet into one without the mask (or the MRIs): the kept channels keep their
    weights, so on inputs whose dropped channels are zero the two compute the same."""
    from mrsisr.registries import BACKBONES
    from mrsisr.types import Condition
    from mrsisr.weights import _strict_load

    kw = dict(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(),
              num_heads=1, image_size=16)  # fmt: skip
    torch.manual_seed(0)
    full = BACKBONES.build("unet", **kw).eval()
    with torch.no_grad():  # a fresh UNet's output layers are zero: give it a real function
        for p in full.parameters():
            p.add_(0.05 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    x, img = torch.randn(2, 1, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g)
    zero = torch.zeros_like(img)
    t, s = torch.tensor([3, 70]), torch.full((2,), 4.0)
    for flags, cond in (
        ({"use_mask": False}, Condition(mask=zero, lr=img, t1=img, flair=img.flip(-1), scale=s)),
        ({"use_mri": False}, Condition(mask=img > 0.5, lr=img, t1=zero, flair=zero, scale=s)),
    ):
        part = BACKBONES.build("unet", **kw, **flags).eval()
        assert part.in_channels < full.in_channels
        _strict_load(part, full.state_dict(), ROOT, "denoiser", adapt=True)
        with torch.no_grad():
            assert full(x, t, cond).abs().max() > 1e-3
            torch.testing.assert_close(part(x, t, cond), full(x, t, cond))
        # and back: a channel the source never read starts at zero
        again = BACKBONES.build("unet", **kw).eval()
        _strict_load(again, part.state_dict(), ROOT, "denoiser", adapt=True)
        with torch.no_grad():
            torch.testing.assert_close(again(x, t, cond), full(x, t, cond))


def test_init_adapt_is_part_of_the_run_identity(tmp_path):
    """A run started with --init-adapt resumes only with it (one clear line otherwise)."""
    from mrsisr.errors import MrsisrError
    from mrsisr.train.engine import Trainer

    train, val, src = _two_step_source(tmp_path)
    out = tmp_path / "adapted"
    Trainer(
        ns["make_pipeline"](seed=1), ns["RECIPE"], train, val, out, config(steps=2, init_adapt=True),
        init={"denoiser": src}, progress=False,
    ).run()  # fmt: skip
    assert json.loads((out / "run.json").read_text())["init_adapt"] is True
    with pytest.raises(MrsisrError, match="init_adapt = true, not false"):
        Trainer(
            ns["make_pipeline"](seed=1), ns["RECIPE"], train, val, out, config(steps=4),
            init={"denoiser": src}, progress=False,
        ).run(resume=True)  # fmt: skip
