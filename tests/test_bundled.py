"""The bundled checkpoint and example: what the README's first command runs."""

from pathlib import Path

from conftest import run_derain
from derain.data.io import read_image
from derain.data.metrics import psnr_y
from derain.model import bundled_checkpoint_path, load_checkpoint

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_bundled_checkpoint_is_the_realtime_model_with_its_training_record():
    model, meta = load_checkpoint()
    assert bundled_checkpoint_path().stat().st_size < 10_000_000
    assert model.config.name == "realtime"
    assert meta["training"]["model"] == "realtime" and meta["validation"]["psnr"] > meta["validation"]["input_psnr"]
    assert not any("test" in folder for folder in meta["training"]["data"]["pairs"])  # never a test split


def test_bundled_checkpoint_derains_the_example(tmp_path):
    result = run_derain("run", EXAMPLES / "rainy-chelsea.png", "-o", tmp_path)
    assert result.returncode == 0, result.stderr
    derained = read_image(tmp_path / "rainy-chelsea.png").rgb
    rainy, clean = read_image(EXAMPLES / "rainy-chelsea.png").rgb, read_image(EXAMPLES / "clean-chelsea.png").rgb
    assert derained.shape == rainy.shape
    assert psnr_y(derained, clean) > psnr_y(rainy, clean) + 3.0  # dB; measured in the model card
