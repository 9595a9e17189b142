"""The example plugin package (plugins/mrsisr-ddim) installed for real and used through mrsisr."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """Install plugins/mrsisr-ddim into a private target folder (the venv is left untouched)."""
    work = tmp_path_factory.mktemp("plugin")
    src = work / "src"
    shutil.copytree(ROOT / "plugins" / "mrsisr-ddim", src)
    site = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    return site


def run(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), COLUMNS="200")
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_plugin_entry_appears_in_mrsisr_list(plugin_site):
    out = run(plugin_site, "-m", "mrsisr", "list", "samplers")
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if " ddim " in l)
    assert "plugin: mrsisr-ddim" in line
    assert "warning" not in out.stderr


def test_plugin_is_invisible_without_install():
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    out = subprocess.run(
        [sys.executable, "-m", "mrsisr", "list", "samplers"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and " ddim " not in out.stdout


def test_plugin_sampler_works_through_the_registry(plugin_site):
    # With the exact noise predictor of a point-mass data distribution (x0 = c everywhere),
    # deterministic DDIM must return c exactly, from any start and any t_start.
    script = textwrap.dedent(
        """
        import json, torch
        from mrsisr.registries import SAMPLERS, SCHEDULES
        from mrsisr.types import Condition

        sampler = SAMPLERS.build("ddim", steps=10)
        schedule = SCHEDULES.build("cosine")
        c = 0.3
        def denoiser(x, t, cond):
            g = schedule.gammas[t].view(-1, 1, 1, 1).to(x.dtype)
            return (x - g.sqrt() * c) / (1 - g).sqrt()
        mask = torch.ones(2, 1, 8, 8); mask[:, :, :2] = 0
        z = torch.zeros_like(mask)
        cond = Condition(mask=mask, lr=z, t1=z, flair=z, scale=torch.full((2,), 4.0))
        out = {}
        for t_start in (1000, 100):
            x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * mask
            x0 = sampler(denoiser, x, t_start, cond, schedule)
            out[t_start] = [float((x0 - c * mask).abs().max()), sampler.nfe(t_start)]
        print(json.dumps({"entry": SAMPLERS.entry("ddim").plugin, "runs": out}))
        """
    )
    out = run(plugin_site, "-c", script)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["entry"] == "mrsisr-ddim"
    for t_start, (err, nfe) in result["runs"].items():
        assert err < 1e-5, (t_start, err)
        assert nfe == 10
