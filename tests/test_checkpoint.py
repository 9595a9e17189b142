"""Checkpoints: exact round trip, atomic writes, clear errors on damage."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from mrsisr.checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint
from mrsisr.errors import CheckpointError


def make(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.Conv2d(4, 1, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.99))
    return net, opt


def train_steps(net, opt, n):
    for _ in range(n):
        x = torch.randn(2, 1, 8, 8)
        loss = (net(x) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_round_trip_continues_exactly(tmp_path):
    net, opt = make()
    ema = make(1)[0]
    train_steps(net, opt, 3)
    save_checkpoint(
        tmp_path / "ck",
        modules={"denoiser": net},
        ema={"denoiser": ema},
        optimizers={"adam": opt},
        state={"step": 3, "recipe": {"name": "x"}},
    )
    random.random(), np.random.rand()
    expected_py, expected_np = random.random(), np.random.rand()
    train_steps(net, opt, 2)
    reference = [p.detach().clone() for p in net.parameters()]

    net2, opt2 = make(5)
    ema2 = make(6)[0]
    ck = load_checkpoint(tmp_path / "ck")
    assert ck.step == 3 and ck.state["recipe"] == {"name": "x"}
    restore_checkpoint(
        ck, modules={"denoiser": net2}, ema={"denoiser": ema2}, optimizers={"adam": opt2}
    )
    random.random(), np.random.rand()
    assert (random.random(), np.random.rand()) == (expected_py, expected_np)
    restore_checkpoint(
        ck, modules={"denoiser": net2}, ema={"denoiser": ema2}, optimizers={"adam": opt2}
    )
    train_steps(net2, opt2, 2)  # same RNG stream, same optimizer moments -> same weights
    for a, b in zip(reference, net2.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(ema.state_dict().values(), ema2.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_overwrite_is_atomic_and_leaves_no_temporaries(tmp_path):
    net, opt = make()
    save_checkpoint(tmp_path / "ck", modules={"m": net}, state={"step": 1})
    save_checkpoint(tmp_path / "ck", modules={"m": net}, state={"step": 2})
    assert load_checkpoint(tmp_path / "ck").step == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_failed_write_keeps_previous_checkpoint(tmp_path):
    net, _ = make()
    save_checkpoint(tmp_path / "ck", modules={"m": net}, state={"step": 1})
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "ck", modules={"m": net}, state={"step": 2, "bad": object()})
    assert load_checkpoint(tmp_path / "ck").step == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


@pytest.mark.parametrize(
    "damage", ["truncate_weights", "flip_byte", "bad_json", "missing_state", "wrong_format"]
)
def test_damaged_checkpoint_gives_clear_error(tmp_path, damage):
    net, opt = make()
    ck = save_checkpoint(
        tmp_path / "ck", modules={"m": net}, optimizers={"adam": opt}, state={"step": 1}
    )
    weights = ck / "weights.safetensors"
    if damage == "truncate_weights":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
        match = r"weights\.safetensors: contents do not match"
    elif damage == "flip_byte":
        data = bytearray(weights.read_bytes())
        data[-3] ^= 0xFF
        weights.write_bytes(bytes(data))
        match = r"weights\.safetensors: contents do not match"
    elif damage == "bad_json":
        (ck / "state.json").write_text("{not json")
        match = r"state\.json: corrupted"
    elif damage == "missing_state":
        (ck / "state.safetensors").unlink()
        match = r"state\.safetensors: missing"
    else:
        meta = json.loads((ck / "state.json").read_text())
        meta["format"] = "something-else"
        (ck / "state.json").write_text(json.dumps(meta))
        match = r"not an mrsisr-checkpoint/1 checkpoint"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(ck)


def test_mismatched_part_names_the_part(tmp_path):
    net, _ = make()
    save_checkpoint(tmp_path / "ck", modules={"denoiser": net}, state={"step": 1})
    other = nn.Linear(3, 3)
    ck = load_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="weights of part 'denoiser' do not fit"):
        restore_checkpoint(ck, modules={"denoiser": other})
    with pytest.raises(CheckpointError, match="no weights for part 'flow'; it has: denoiser"):
        restore_checkpoint(ck, modules={"flow": other})
