import json

import numpy as np
import pytest
import torch

from conftest import run_derain
from derain.data.datasets import PatchDataset, load_pairs
from derain.data.metrics import psnr_y, ssim_y
from derain.model import build_model, load_checkpoint
from derain.train import TrainSettings, evaluate, train

pytest.importorskip("skimage", reason="synthetic data needs scikit-image's sample photos (the `train` extra)")


def test_psnr_and_ssim_behave():
    rng = np.random.default_rng(0)
    clean = rng.random((48, 64, 3)).astype(np.float32)
    noisy = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
    noisier = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    assert psnr_y(clean, clean) == float("inf") and ssim_y(clean, clean) == pytest.approx(1.0)
    assert psnr_y(noisy, clean) > psnr_y(noisier, clean)
    assert 0 < ssim_y(noisier, clean) < ssim_y(noisy, clean) < 1
    # A uniform error of 1/255 in every channel is 255*(65.481+128.553+24.966)/255/255 Y levels.
    shifted = clean * 0 + 0.5
    y_step = (65.481 + 128.553 + 24.966) / 255
    assert psnr_y(shifted + 1 / 255, shifted) == pytest.approx(20 * np.log10(255 / y_step), abs=1e-3)


def test_synthetic_patches_are_seeded_and_rainy():
    first, again = PatchDataset("synthetic", 48, 4, seed=3), PatchDataset("synthetic", 48, 4, seed=3)
    rainy, clean = first[2]
    assert rainy.shape == clean.shape == (3, 48, 48)
    assert torch.equal(rainy, again[2][0])
    assert not torch.equal(rainy, first[1][0])
    assert (rainy >= clean - 1e-6).all()  # rain only brightens (screen blend)


def test_training_lowers_the_loss_and_saves_a_loadable_checkpoint(tmp_path):
    model = build_model("tiny")
    settings = TrainSettings(steps=60, batch=4, patch=32, lr=2e-3)
    losses = train(model, settings, output=tmp_path / "tiny.pt", log_every=10)
    assert len(losses) == 60 and np.mean(losses[-10:]) < np.mean(losses[:10])
    loaded, meta = load_checkpoint(tmp_path / "tiny.pt")
    assert meta["training"]["steps"] == 60
    scores = evaluate(loaded, load_pairs("synthetic")[:2])
    assert scores["images"] == 2 and np.isfinite(scores["psnr"])


def test_eval_command_prints_and_records_scores(tmp_path, tiny_checkpoint):
    checkpoint = tmp_path / "tiny.pt"
    checkpoint.write_bytes(tiny_checkpoint.read_bytes())
    result = run_derain("eval", "--checkpoint", checkpoint, "--record")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["images"] == 9 and scores["input_psnr"] < 40
    assert load_checkpoint(checkpoint)[1]["synthetic_eval"] == scores
