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


def _real_test_frames() -> list:
    import torch

    from conftest import shared_data

    names = [("GT-RAIN", "North_Cape_0-0-Webcam-R-000.png"), ("Rain100L", "1.png"), ("Rain100H", "1.png")]
    return [torch.from_numpy(read_image(shared_data(d, "test", "rain", n)).rgb.transpose(2, 0, 1).copy()).float()[None]
            for d, n in names]  # read_image gives float32 in [0, 1]


def test_counting_sort_leaves_the_bundled_checkpoints_outputs_unchanged():
    """The export's loop-free counting sort computes the same network as torch.argsort, on real rain."""
    import torch

    model, _ = load_checkpoint()
    model.eval()
    for frame in _real_test_frames():
        with torch.no_grad():
            model.set_sort_method("argsort")
            reference = model(frame)
            model.set_sort_method("counting")
            counted = model(frame)
        assert (counted - reference).abs().max().item() <= 1e-5


def test_counting_sort_equals_argsort_on_the_keys_of_a_real_720p_frame():
    import torch
    import torch.nn.functional as F

    from derain.model.sorting import positions_argsort, positions_counting

    model, _ = load_checkpoint()
    model.eval()
    frame = F.interpolate(_real_test_frames()[0], size=(720, 1280), mode="bilinear")
    seen = []
    for module in model.nonlocal_attentions():
        compute = module.sort_keys

        def recording(tokens, compute=compute, module=module):  # noqa: ANN001, ANN202
            cluster_ids, keys = compute(tokens)
            seen.append((keys, module.clusters * module.sub_buckets))
            return cluster_ids, keys

        module.sort_keys = recording
    with torch.no_grad():
        model(frame)
    # 1/4 of the 1280x736 canvas: 320 x 184 tokens; the bottleneck pads its 160 x 92 to whole windows
    assert sorted(keys.shape[1] for keys, _ in seen) == [160 * 96, 320 * 184]
    for keys, buckets in seen:
        # A real sort of a real frame: most of the 32 keys in use (27-32 for stages 3 and 4).
        assert buckets == 32 and len(keys.unique()) >= buckets // 2
        assert torch.equal(positions_counting(keys, buckets), positions_argsort(keys))
