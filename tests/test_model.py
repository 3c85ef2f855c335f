import pytest
import torch
import torch.nn.functional as F

from derain.model import CONFIGS, build_model, get_config, load_checkpoint, save_checkpoint
from derain.model.blocks import Stage
from derain.model.network import pad_to_multiple


@pytest.mark.parametrize("size", [(1, 1), (7, 5), (17, 23), (33, 47), (64, 64)])
def test_output_has_input_size_for_any_size(size):
    model = build_model("tiny").eval()
    image = torch.rand(2, 3, *size)
    with torch.no_grad():
        assert model(image).shape == image.shape


@pytest.mark.parametrize("encoder,decoder", [("stb", "stb"), ("mab", "stb"), ("stb", "nab"), ("nab", "nab"),
                                             ("mab", "mab")])
def test_table2_ablations_build_and_run(encoder, decoder):
    model = build_model(get_config("tiny").with_blocks(encoder, decoder)).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 20, 24)).shape == (1, 3, 20, 24)


def test_padding_reflects_large_images_and_replicates_tiny_ones():
    image = torch.arange(12.0).reshape(1, 1, 3, 4)
    padded = pad_to_multiple(image, 8)
    assert padded.shape[-2:] == (8, 8)
    assert torch.equal(padded[..., :3, :4], image)
    big = torch.rand(1, 1, 10, 10)
    assert torch.equal(pad_to_multiple(big, 8)[..., 10, :10], big[..., 8, :])  # mirror of row 8


@pytest.mark.parametrize("kind", ["mab", "nab"])
def test_a_stage_on_a_map_of_part_windows_runs_on_it_mirrored_and_cropped(kind):
    """The bottleneck's map at 1/8 of a canvas padded to size_multiple need not tile into windows
    (720p: 92 rows of 8-row windows): the stage pads it as the image is padded, mask included."""
    torch.manual_seed(0)
    stage = Stage(kind, 2, 16, 2, 4, 4, 1.5).eval()
    x, mask = torch.randn(1, 16, 6, 10), (torch.rand(1, 1, 6, 10) > 0.5).float()
    mirrored = [F.pad(t, (0, 2, 0, 2), mode="reflect") for t in (x, mask)]  # to 8 x 12: whole 4 x 4 windows
    with torch.no_grad():
        assert torch.allclose(stage(x, mask), stage(*mirrored)[..., :6, :10], atol=1e-6)
        tiny, tiny_mask = torch.randn(1, 16, 2, 3), mask[..., :2, :3]  # 2 rows to add to 2: replicated
        padded = [F.pad(F.pad(t, (0, 1, 0, 0), mode="reflect"), (0, 0, 0, 2), mode="replicate") for t in (tiny, tiny_mask)]
        assert torch.allclose(stage(tiny, tiny_mask), stage(*padded)[..., :2, :3], atol=1e-6)


def test_edge_config_fits_the_jetson_budget():
    params = sum(p.numel() for p in build_model("edge").parameters())
    assert params <= 1_500_000


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = build_model("tiny").train()
    rainy, clean = torch.rand(2, 3, 24, 20), torch.rand(2, 3, 24, 20)
    torch.nn.functional.l1_loss(model(rainy), clean).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_training_forward_moves_centroids_and_eval_does_not():
    model = build_model("tiny")
    centroids = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("centroids")}
    assert centroids
    with torch.no_grad():
        model.eval()(torch.rand(1, 3, 16, 16))
        assert all(torch.equal(model.state_dict()[k], v) for k, v in centroids.items())
        model.train()(torch.rand(1, 3, 16, 16))
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in centroids.items())


def test_eval_mode_is_deterministic_and_survives_a_checkpoint(tmp_path):
    torch.manual_seed(1)
    model = build_model("tiny").eval()
    image = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        first, second = model(image), model(image)
    assert torch.equal(first, second)
    save_checkpoint(model, tmp_path / "m.pt", {"hello": "world"})
    loaded, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta == {"hello": "world"} and loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(image), first)


def test_counting_sort_model_equals_argsort_model():
    torch.manual_seed(2)
    model = build_model("tiny").eval()
    image = torch.rand(1, 3, 32, 24)
    with torch.no_grad():
        reference = model(image)
        model.set_sort_method("counting")
        assert torch.equal(model(image), reference)


def test_unknown_config_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model config 'huge'"):
        get_config("huge")
    assert {"paper", "realtime", "edge", "tiny", "paper-m1", "paper-m5"} <= set(CONFIGS)


def test_training_moves_unused_centroids_onto_pixel_features():
    from derain.model.nonlocal_attention import NonLocalAttention

    torch.manual_seed(0)
    attention = NonLocalAttention(dim=8, heads=1, window=2, clusters=4).train()
    tokens = torch.nn.functional.normalize(torch.rand(1, 16, 8) + 2.0, dim=-1)  # a narrow cone of features
    attention.centroids.copy_(torch.nn.functional.normalize(torch.tensor(
        [[1.0] * 8, [-1.0] * 8, [1.0, -1.0] * 4, [-1.0, 1.0] * 4]), dim=-1))  # only the first can win
    attention.sort_keys(tokens)
    similarity = attention.centroids @ tokens[0].t()
    assert (similarity.max(dim=1).values > 0.999).sum() == 3  # the three unused ones now sit on pixels
    assert torch.bincount(attention.sort_keys(tokens)[0][0], minlength=4).gt(0).sum() > 1


def _attention_kinds(stage) -> set[str]:
    """What a stage's blocks really compute, read from their attention modules."""
    from derain.model.attention import WindowAttention
    from derain.model.nonlocal_attention import NonLocalAttention

    kinds = set()
    for module in stage.modules():
        if isinstance(module, NonLocalAttention):
            kinds.add("nab")
        elif isinstance(module, WindowAttention) and not any(
                isinstance(parent, NonLocalAttention) and parent.local is module for parent in stage.modules()):
            kinds.add("mab" if module.masked else "stb" if module.position_bias is not None else "plain")
    return kinds


@pytest.mark.parametrize("name,encoder,decoder", [("paper", "mab", "nab"), ("paper-m1", "stb", "stb"),
                                                  ("paper-m2", "mab", "mab"), ("paper-m3", "nab", "nab"),
                                                  ("paper-m4", "mab", "stb"), ("paper-m5", "stb", "nab")])
def test_table2_configs_hold_only_the_blocks_their_names_say(name, encoder, decoder):
    with torch.device("meta"):
        model = build_model(name)
    assert all(_attention_kinds(stage) == {encoder} for stage in model.encoder)
    stage2 = [model.bottleneck, model.refine, *model.decoder]
    assert all(_attention_kinds(stage) == {decoder} for stage in stage2)


def test_realtime_is_conv_at_full_and_half_resolution_and_dual_stage_below():
    config = get_config("realtime")
    with torch.device("meta"):
        model = build_model(config)
    for level in range(config.levels):
        for part, stages in (("encoder", model.encoder), ("decoder", model.decoder)):
            kinds = _attention_kinds(stages[level])
            assert kinds <= ({"mab"} if part == "encoder" else {"nab"}) if level >= 2 else kinds == set()
    assert _attention_kinds(model.encoder[2]) == {"mab"} and _attention_kinds(model.bottleneck) == {"nab"}
    assert all(c % 16 == 0 for c in (config.channels * 2**i for i in range(config.levels + 1)))
