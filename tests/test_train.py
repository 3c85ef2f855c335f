import json
import os
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from conftest import run_derain
from derain.data.datasets import (DataSpec, TrainingData, read_rgb8, scene_of, split_pairs, streak_target,
                                  tone_aligned)
from derain.data.io import read_image
from derain.data.pairs import clean_name_candidates, load_pairs, pair_paths
from derain.data.metrics import psnr_y, ssim_y
from derain.errors import DerainError
from derain.model import build_model, get_config, load_checkpoint
from derain.train import TrainSettings, evaluate, train
from derain.train.loop import Schedule, parse_patches, plan

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


def _identity_model():
    """The residual network with a zero head outputs its input exactly."""
    model = build_model("tiny").eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    return model


def test_evaluation_matches_a_hand_computation_and_quantises_outputs():
    clean = np.full((32, 40, 3), 100 / 255, np.float32)
    rainy = clean + 10 / 255  # every channel 10 levels brighter
    y_error = 10 * (65.481 + 128.553 + 24.966) / 255  # Y levels (MATLAB rgb2ycbcr)
    scores = evaluate(_identity_model(), [(rainy, clean)], progress=False)
    assert scores["psnr"] == pytest.approx(20 * np.log10(255 / y_error), abs=1e-3)
    assert scores["psnr"] == pytest.approx(scores["input_psnr"], abs=1e-3) and scores["images"] == 1
    # An output 0.4 of a level off is scored as the uint8 image a user gets: rounded away.
    scores = evaluate(_identity_model(), [(clean + 0.4 / 255, clean)], progress=False)
    assert scores["psnr"] == float("inf") and scores["input_psnr"] < 60


def test_pairing_rules_of_the_usual_datasets(tmp_path):
    assert "norain-12.png" in clean_name_candidates("rain-12.png")
    assert "norain-7.png" in clean_name_candidates("norain-7x2.png")
    assert "3.jpg" in clean_name_candidates("3_11.jpg")
    for folder in ("rain", "norain"):
        (tmp_path / folder).mkdir()
    image = np.zeros((8, 8, 3), np.uint8)
    for name in ("norain-1x2.png", "norain-2x2.png"):
        cv2.imwrite(str(tmp_path / "rain" / name), image)
    for name in ("norain-1.png", "norain-2.png"):
        cv2.imwrite(str(tmp_path / "norain" / name), image)
    assert [(r.name, c.name) for r, c in pair_paths(tmp_path)] == [("norain-1x2.png", "norain-1.png"),
                                                                   ("norain-2x2.png", "norain-2.png")]


def _paired_folder(root, count=6, size=(40, 56)):
    """A small paired folder with synthetic rain, as a dataset on disk."""
    from derain.data.synthetic import add_rain, sample_photo

    rng = np.random.default_rng(0)
    for folder in ("rain", "norain"):
        (root / folder).mkdir(parents=True)
    photo = sample_photo("astronaut")
    for i in range(count):
        clean = cv2.resize(photo[i * 40 : i * 40 + 200, :280], size[::-1])
        for folder, image in (("norain", clean), ("rain", add_rain(clean, rng))):
            cv2.imwrite(str(root / folder / f"{i}.png"), cv2.cvtColor(np.rint(image * 255).astype(np.uint8),
                                                                      cv2.COLOR_RGB2BGR))
    return root


def test_training_batches_are_seeded_mixed_and_hold_out_validation(tmp_path):
    folder = _paired_folder(tmp_path / "pairs")
    spec = DataSpec(pairs=(str(folder),), clean=("skimage",), rain_layers=(str(folder),), mix=(1, 1, 1),
                    val_fraction=0.34)
    data, again = (TrainingData(spec, 4, lambda step: 48 if step < 2 else 64, seed=3) for _ in range(2))
    rainy, clean = data[1]
    assert rainy.shape == clean.shape == (4, 3, 48, 48) and data[2][0].shape == (4, 3, 64, 64)
    assert torch.equal(rainy, again[1][0]) and not torch.equal(rainy, data[0][0])
    difference = rainy - clean
    assert (difference.abs().mean(dim=(1, 2, 3)) > 0.005).all()  # every sample is rainy
    assert (difference > 1e-3).float().mean() > (difference < -1e-3).float().mean()  # rain brightens
    assert len(data.val_pairs) == 2 and not set(data.val_pairs) & set(data.pairs)
    assert not set(data.val_pairs) & set(data.rain_pairs)  # no rain layer of a validation pair either
    assert all(image.dtype == np.uint8 for image in data.pair_images.cache.values())  # kept as uint8
    other_rank = TrainingData(spec, 4, lambda step: 48, seed=3, rank=1)
    assert not torch.equal(other_rank[1][0], rainy)


def test_training_pairs_are_each_pair_trained_on_once_with_its_real_clean_frame(tmp_path):
    folder = _paired_folder(tmp_path / "pairs")
    spec = DataSpec(pairs=(str(folder), str(folder)), clean=("skimage",), mix=(1, 0, 0), val_fraction=0.34)
    data = TrainingData(spec, 2, lambda step: 32)
    pairs, sources = data.training_pairs(), data.training_sources()
    kept = list(dict.fromkeys(data.pairs))
    assert len(data.pairs) == 2 * len(kept) == 2 * len(pairs) == 8 and sources == [f"{tmp_path.name}/pairs"] * 4
    assert not set(kept) & set(data.val_pairs)
    for (rainy, clean), (rainy_path, clean_path) in zip(pairs, kept):
        assert np.array_equal(rainy, read_image(rainy_path).rgb) and np.array_equal(clean, read_image(clean_path).rgb)


def test_validation_holds_out_whole_scenes(tmp_path):
    assert scene_of("Deadwood_0-0-Webcam-R-003.png") == "Deadwood_0-0" == scene_of("Deadwood_0-0-Webcam-R-250.png")
    assert scene_of("unnamed02-rain-005.png") == "unnamed02" and scene_of("3_11.jpg") == "3"
    assert scene_of("rain-12.png") == "rain-12" and scene_of("norain-1x2.png") == "norain-1x2"
    assert scene_of("light_3.png") == scene_of("heavy_3.png") == "background-3" != scene_of("heavy_4.png")
    image = np.zeros((8, 8, 3), np.uint8)
    frames = [f"{scene}-Webcam-R-{k:03d}.png" for scene in "ABC" for k in range(3)]
    for folder in ("rain", "norain"):
        (tmp_path / folder).mkdir()
        for name in frames:
            cv2.imwrite(str(tmp_path / folder / name), image)
    train_pairs, val_pairs = split_pairs([tmp_path], 0.34)
    assert {scene_of(r) for r, _ in val_pairs} == {"B"} and len(val_pairs) == 3 and len(train_pairs) == 6
    twice_train, twice_val = split_pairs([tmp_path, tmp_path], 0.34)
    assert twice_train == train_pairs * 2 and twice_val == val_pairs


def test_tone_alignment_moves_light_not_detail():
    rng = np.random.default_rng(0)
    detail = rng.integers(0, 60, (96, 96, 3)).astype(np.float32)
    clean = detail + 100
    rainy = detail + 140  # the light changed between the frames: +40 everywhere
    rainy[::8] = 255  # and rain streaks
    aligned = tone_aligned(rainy.astype(np.uint8), clean.astype(np.uint8)).astype(np.float32)
    assert abs((aligned - clean).mean() - (rainy - clean).mean()) < 2  # the rainy frame's light
    assert np.corrcoef((aligned - clean)[16:-16, 16:-16].ravel(), detail[16:-16, 16:-16].ravel())[0, 1] < 0.05
    assert (rainy - aligned)[::8].mean() > 60  # the streaks themselves stay out of the target


def test_streak_targets_repair_the_streaks_and_keep_the_fog():
    rng = np.random.default_rng(0)
    clean = cv2.GaussianBlur(rng.uniform(40, 200, (96, 96, 3)).astype(np.float32), (0, 0), 3)
    rainy = clean * 0.6 + 70  # rain fog: less contrast, brighter
    streaks = np.zeros((96, 96), bool)
    streaks[10:80, 20::16] = True  # thin vertical streaks
    rainy[streaks] += 90
    rainy8, clean8 = np.clip(rainy, 0, 255).astype(np.uint8), np.clip(clean, 0, 255).astype(np.uint8)
    target = streak_target(rainy8, clean8).astype(np.float32)
    away = ~cv2.dilate(streaks.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.array_equal(target[away], rainy8[away].astype(np.float32))  # the fog is kept
    assert (rainy8[streaks] - target[streaks]).mean() > 60  # the streaks are gone


def test_each_paired_folder_gets_the_targets_it_asks_for(tmp_path):
    folder = _paired_folder(tmp_path / "pairs")
    rainy_path, clean_path = pair_paths(folder)[0]
    rainy, clean = read_rgb8(rainy_path), read_rgb8(clean_path)
    aligned, streaks = tone_aligned(rainy, clean), streak_target(rainy, clean)
    assert not np.array_equal(aligned, clean) and not np.array_equal(streaks, aligned)  # three targets
    for option, made in (({}, clean), ({"align_tone": (str(folder),)}, aligned),
                         ({"streak_targets": (str(folder),)}, streaks)):
        data = TrainingData(DataSpec(pairs=(str(folder),), mix=(1, 0, 0), val_fraction=0, **option), 1, lambda s: 32)
        assert np.array_equal(data.pair_images[1], made), option
    result = run_derain("train", "--pairs", folder, "--align-tone", folder, "--streak-targets", folder,
                        "--steps", "1", "-o", tmp_path / "both")
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0 and "both --align-tone" in result.stderr
    assert not (tmp_path / "both").exists()


def test_haze_sets_the_veil_of_synthetic_camera_rain():
    from derain.data.synthetic import add_rain, sample_photo

    clean = sample_photo("astronaut")[:128, :128]
    contrast = {haze: np.mean([add_rain(clean, np.random.default_rng(seed), "real", haze=haze).std()
                               for seed in range(8)]) for haze in (0.0, 0.6)}
    assert contrast[0.6] < 0.85 * contrast[0.0]  # fog lowers the contrast; a trace does not
    foggy, default = (TrainingData(DataSpec(clean=("skimage",), mix=(0, 1, 0, 0), **veil), 16, lambda step: 32)
                      for veil in ({"haze": 0.6}, {}))
    assert not torch.equal(foggy[0][0], default[0][0]) and torch.equal(foggy[0][1], default[0][1])  # the run's veil


def test_rainless_samples_are_their_own_target(tmp_path):
    data = TrainingData(DataSpec(clean=("skimage",), mix=(0, 0, 0, 1)), 3, lambda step: 32)
    rainy, clean = data[0]
    assert torch.equal(rainy, clean) and clean.std() > 0


def test_schedule_warms_up_decays_and_fills_a_time_budget():
    settings = TrainSettings(model="tiny", steps=100, patches=parse_patches("32:0.75,64:0.25"), warmup=0.1)
    schedule = plan(settings)
    assert schedule.steps == 100 and schedule.phases == [(0, 32), (75, 64)] and schedule.patch_at(80) == 64
    lrs = [schedule.lr_at(s) for s in range(100)]
    assert lrs[0] < lrs[9] == pytest.approx(1e-3) and lrs[99] < 2e-6 and np.argmax(lrs) == 9
    budgeted = plan(TrainSettings(model="tiny", time_budget=60.0, patches=parse_patches("32:0.5,64:0.5")),
                    {32: 0.1, 64: 0.4})
    assert budgeted.phases == [(0, 32), (300, 64)] and budgeted.steps == 375  # 30 s / 0.1 + 30 s / 0.4
    assert isinstance(budgeted, Schedule)


def _tiny_settings(**kwargs) -> TrainSettings:
    defaults = dict(model="tiny", data=DataSpec(clean=("skimage",), val_fraction=0.0), steps=6, batch=2,
                    patches=((32, 1.0),), val_every=1000, save_every=1, log_every=1)
    return TrainSettings(**{**defaults, **kwargs})


def test_resume_continues_a_run_exactly(tmp_path):
    threads = torch.get_num_threads()
    whole = train(_tiny_settings(threads=1), tmp_path / "whole")  # one thread: the same float sums in both
    torch.set_num_threads(2)
    train(_tiny_settings(threads=1), tmp_path / "halves", stop_after=3)
    torch.set_num_threads(2)
    assert torch.load(tmp_path / "halves" / "last.pt", weights_only=True)["step"] == 3
    try:
        halves = train(_tiny_settings(threads=None), tmp_path / "halves", resume=True)
        assert torch.get_num_threads() == 1  # the run's own thread count, not this process's
    finally:
        torch.set_num_threads(threads)
    segments = halves["segments"]
    assert [(s["first_step"], s["last_step"], s["threads"]) for s in segments] == [(0, 3, 1), (3, 6, 1)]
    assert all(s["wall_s"] > 0 and s["cpu_s"] > 0 for s in segments)
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "halves" / "last.pt", weights_only=True)
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])  # weights, EMA and NAB centroids
    assert [r["loss"] for r in whole["train"]] == [r["loss"] for r in halves["train"]]
    model, meta = load_checkpoint(tmp_path / "halves" / "best.pt")
    assert meta["training"]["model"] == "tiny" and model.config.name == "tiny"


def test_validation_keeps_the_best_ema_checkpoint_and_plots_curves(tmp_path):
    folder = _paired_folder(tmp_path / "pairs", count=4, size=(48, 48))
    settings = _tiny_settings(data=DataSpec(pairs=(str(folder),), clean=(), val_fraction=0.25), steps=4,
                              val_every=2, lr=2e-3)
    log = train(settings, tmp_path / "run")
    assert [v["step"] for v in log["val"]] == [2, 4] and log["best"]["psnr"] == max(v["psnr"] for v in log["val"])
    assert log["val"][-1]["sources"][f"{tmp_path.name}/pairs"]["psnr"] == log["val"][-1]["psnr"]  # one source: the same mean
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0
    assert json.loads((tmp_path / "run" / "log.json").read_text())["best"] == log["best"]
    _, meta = load_checkpoint(tmp_path / "run" / "best.pt")
    assert meta["best"]["step"] == log["best"]["step"]
    assert meta["validation"] == log["best"]
    final, final_meta = load_checkpoint(tmp_path / "run" / "final.pt")
    assert final_meta["validation"] == log["val"][-1]  # the scores of these weights, not of best.pt's
    ema = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["ema"]
    assert all(torch.equal(final.state_dict()[k], ema[k]) for k in ema)  # the EMA at the last step


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, port: int, run_dir: str) -> None:
    import derain.train.loop as loop

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank))
    torch.set_num_threads(1)
    built = {}
    build = loop.build_model
    loop.build_model = lambda config: built.setdefault("model", build(config))  # keep each rank's model
    train(_tiny_settings(steps=3, save_every=3), run_dir)
    torch.save(built["model"].state_dict(), os.path.join(run_dir, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_ddp_trains_and_keeps_centroids_in_sync(tmp_path):
    """Two processes on gloo, as torchrun starts them. The ranks draw different batches, so only the
    all-reduce of the cluster statistics keeps their NAB centroids (buffers, not synced by DDP) equal."""
    mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["step"] == 3 and np.isfinite(saved["log"]["train"][-1]["loss"])
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    initial = build_model("tiny").state_dict()
    centroids = [k for k in initial if k.endswith("centroids") or k.endswith("balance")]
    assert centroids and all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # weights and centroids
    assert any(not torch.equal(ranks[0][k], initial[k]) for k in centroids)  # and they did move


def test_train_command_writes_a_run_and_refuses_zero_steps(tmp_path):
    result = run_derain("train", "--model", "tiny", "--steps", "3", "--batch", "2", "--patches", "32",
                        "--threads", "1", "-o", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["run"] == str(tmp_path / "run")
    loaded, _ = load_checkpoint(tmp_path / "run" / "best.pt")
    assert loaded.config == get_config("tiny")
    result = run_derain("train", "--steps", "0", "-o", tmp_path / "zero")
    assert result.returncode == 1 and "argument --steps: must be an integer at least 1, got 0" in result.stderr and not (tmp_path / "zero").exists()
    result = run_derain("train", "--haze", "1.5", "-o", tmp_path / "fog")
    assert result.returncode == 1 and "argument --haze: must be a number at least 0 and below 1, got 1.5" in result.stderr and not (tmp_path / "fog").exists()


def test_eval_command_prints_and_records_scores(tmp_path, tiny_checkpoint):
    checkpoint = tmp_path / "tiny.pt"
    checkpoint.write_bytes(tiny_checkpoint.read_bytes())
    result = run_derain("eval", "--checkpoint", checkpoint, "--record")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["images"] == len(load_pairs("synthetic")) and scores["input_psnr"] < 40
    assert load_checkpoint(checkpoint)[1]["synthetic_eval"] == scores


def test_eval_command_scores_every_test_split_and_saves_the_worst(tmp_path, tiny_checkpoint):
    for name in ("SetA", "SetB"):
        _paired_folder(tmp_path / "data" / name / "test", count=4 if name == "SetA" else 2)
    _paired_folder(tmp_path / "data" / "SetA" / "train", count=2)  # never scored
    result = run_derain("eval", "--checkpoint", tiny_checkpoint, "--data", "all", "--data-root", tmp_path / "data",
                        "--json", tmp_path / "scores.json", "--save", tmp_path / "worst")
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "scores.json").read_text())["splits"]
    assert set(scores) == {"SetA", "SetB"} and scores["SetA"]["images"] == 4 and len(scores["SetA"]["per_image"]) == 4
    assert scores["SetA"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in scores["SetA"]["per_image"]]), abs=1e-3)
    assert "| SetB | 2 |" in result.stderr  # the Markdown table
    assert len(list((tmp_path / "worst").glob("SetA-worst-*.png"))) == 3
    panel = cv2.imread(str(next((tmp_path / "worst").glob("SetB-worst-*.png"))))
    assert panel.shape == (40, 3 * 56, 3)  # rainy | derained | clean
    result = run_derain("eval", "--data", "all", "--data-root", tmp_path / "empty")
    assert result.returncode == 1 and "no <dataset>/test" in result.stderr


def test_a_full_disk_during_a_save_keeps_the_last_checkpoint_and_the_run_resumes_from_it(tmp_path, monkeypatch):
    """The save after step 2 fails halfway (the disk is full): one clear error, step 2's last.pt
    intact and no temporary beside it; resuming then ends where an uninterrupted run ends."""
    threads = torch.get_num_threads()
    whole = train(_tiny_settings(threads=1, steps=4), tmp_path / "whole")
    torch.set_num_threads(threads)
    real_save = torch.save
    saves = []

    def full_disk(state, path):  # noqa: ANN001, ANN202
        saves.append(path)
        if len(saves) == 3:
            Path(path).write_bytes(b"half a checkpoint")
            raise RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing file")
        real_save(state, path)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(DerainError, match="last.pt: cannot write"):
        train(_tiny_settings(threads=1, steps=4), tmp_path / "cut")
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["step"] == 2
    assert not [p for p in (tmp_path / "cut").iterdir() if ".tmp" in p.name]
    resumed = train(_tiny_settings(threads=None), tmp_path / "cut", resume=True)
    torch.set_num_threads(threads)
    assert [r["loss"] for r in resumed["train"]] == [r["loss"] for r in whole["train"]]
