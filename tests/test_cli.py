import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import run_derain
from derain.model import CONFIGS, build_model


def _write_image(path: Path, shape=(37, 50, 3), dtype=np.uint8, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    assert cv2.imwrite(str(path), pixels)
    return pixels


def _write_video(path: Path, frames: int = 6, size=(40, 32)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))
    writer.release()


def _one_error_line(result) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("derain: error: ")
    return lines[0]


def _no_files(folder: Path) -> bool:
    return not folder.exists() or not any(p.is_file() for p in folder.rglob("*"))


def test_info_json_lists_every_config_with_counted_params():
    result = run_derain("info", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(CONFIGS)
    for name, row in rows.items():
        assert row["params"] == sum(p.numel() for p in build_model(name).parameters())
        assert 0 < row["gflops"]["256x256"] < row["gflops"]["1280x720"]
    assert rows["tiny"]["gflops"]["256x256"] < rows["edge"]["gflops"]["256x256"] < rows["paper"]["gflops"]["256x256"]
    assert rows["realtime"]["gflops"]["1280x720"] <= 40  # the Jetson budget of the realtime config


def test_run_one_image_keeps_size_and_format(tmp_path, tiny_checkpoint):
    source = tmp_path / "rainy.jpg"
    pixels = _write_image(source)
    result = run_derain("run", source, "-o", tmp_path / "out" / "clean.jpg", "--checkpoint", tiny_checkpoint)
    assert result.returncode == 0, result.stderr
    output = cv2.imread(str(tmp_path / "out" / "clean.jpg"), cv2.IMREAD_UNCHANGED)
    assert output.shape == pixels.shape and output.dtype == np.uint8
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["clean.jpg"]  # no temporary left behind


def test_run_folder_and_video(tmp_path, tiny_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    _write_image(folder / "a.png", seed=1)
    _write_image(folder / "b.bmp", shape=(20, 30, 3), seed=2)
    (folder / "notes.txt").write_text("not an image, skipped")
    _write_video(folder / "clip.avi")
    result = run_derain("run", folder, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.bmp", "clip.avi"]
    assert cv2.imread(str(tmp_path / "out" / "b.bmp")).shape == (20, 30, 3)
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip.avi"))
    frames = []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    assert len(frames) == 6 and frames[0].shape == (32, 40, 3)
    assert "frame" in result.stderr  # the video's progress bar


def test_grayscale_rgba_and_16bit_are_converted_and_kept(tmp_path, tiny_checkpoint):
    gray = _write_image(tmp_path / "gray.png", shape=(30, 41))
    rgba = _write_image(tmp_path / "rgba.png", shape=(30, 41, 4))
    deep = _write_image(tmp_path / "deep.png", shape=(30, 41, 3), dtype=np.uint16)
    result = run_derain("run", tmp_path / "gray.png", tmp_path / "rgba.png", tmp_path / "deep.png",
                        "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint)
    assert result.returncode == 0, result.stderr
    read = {name: cv2.imread(str(tmp_path / "out" / name), cv2.IMREAD_UNCHANGED) for name in
            ("gray.png", "rgba.png", "deep.png")}
    assert read["gray.png"].shape == gray.shape
    assert read["rgba.png"].shape == rgba.shape and np.array_equal(read["rgba.png"][:, :, 3], rgba[:, :, 3])
    assert read["deep.png"].dtype == np.uint16 and read["deep.png"].shape == deep.shape


def test_corrupt_image_is_one_line_error_and_no_output(tmp_path, tiny_checkpoint):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    line = _one_error_line(run_derain("run", bad, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint))
    assert str(bad) in line and "cannot read image" in line
    assert _no_files(tmp_path / "out")


def test_corrupt_video_is_one_line_error_and_no_output(tmp_path, tiny_checkpoint):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    line = _one_error_line(run_derain("run", bad, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint))
    assert str(bad) in line
    assert _no_files(tmp_path / "out")


@pytest.mark.parametrize("case", ["unsupported", "empty folder", "missing", "unwritable", "kind mismatch",
                                  "bad checkpoint", "bad device"])
def test_bad_input_gives_one_line_naming_the_file(tmp_path, tiny_checkpoint, case):
    image = tmp_path / "ok.png"
    _write_image(image)
    args, named = {
        "unsupported": (["run", tmp_path / "anim.gif"], tmp_path / "anim.gif"),
        "empty folder": (["run", tmp_path / "empty"], tmp_path / "empty"),
        "missing": (["run", tmp_path / "nope.png"], tmp_path / "nope.png"),
        "unwritable": (["run", image, "-o", tmp_path / "ok.png" / "sub" / "x.png"], tmp_path / "ok.png" / "sub"),
        "kind mismatch": (["run", image, "-o", tmp_path / "out.mp4"], tmp_path / "out.mp4"),
        "bad checkpoint": (["run", image, "-o", tmp_path / "o.png", "--checkpoint", image], image),
        "bad device": (["run", image, "-o", tmp_path / "o.png", "--device", "nodevice"], "--device nodevice"),
    }[case]
    (tmp_path / "anim.gif").write_bytes(b"GIF89a")
    (tmp_path / "empty").mkdir()
    if "-o" not in args:
        args += ["-o", tmp_path / "out"]
    if "--checkpoint" not in args:
        args += ["--checkpoint", tiny_checkpoint]
    line = _one_error_line(run_derain(*args))
    assert str(named) in line
    assert _no_files(tmp_path / "out") and not (tmp_path / "o.png").exists()


def test_a_missing_optional_extra_names_the_extra_to_install(tmp_path, tiny_checkpoint):
    import subprocess
    import sys

    script = ("import sys; sys.modules['onnxsim'] = None  # as if the `onnx` extra were not installed\n"
              "from derain.cli import main\n"
              f"sys.exit(main(['export', '--checkpoint', r'{tiny_checkpoint}', '--height', '8', '--width', '8', "
              f"'-o', r'{tmp_path / 'm.onnx'}']))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip() == "derain: error: `derain export` needs onnxsim: pip install 'derain[onnx]'"


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_truncated_image_is_refused_in_one_line(tmp_path, tiny_checkpoint, suffix):
    whole = tmp_path / f"whole{suffix}"
    _write_image(whole)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    line = _one_error_line(run_derain("run", cut, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint))
    assert str(cut) in line and "truncated" in line and _no_files(tmp_path / "out")
    assert run_derain("run", whole, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint).returncode == 0


def test_one_corrupt_file_in_a_folder_stops_the_run_before_any_output(tmp_path, tiny_checkpoint):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "c.png"):
        _write_image(folder / name)
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    line = _one_error_line(run_derain("run", folder, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint))
    assert "b.png" in line and _no_files(tmp_path / "out")  # a.png is not written either


def test_version_and_bad_counts_are_answered_in_one_line(tmp_path):
    result = run_derain("--version")
    assert result.returncode == 0 and result.stdout.startswith("derain ")
    for args, message in ((["info", "--store", tmp_path / "missing"], "no such engine store"),
                          (["calib", "--source", tmp_path, "--num", "0", "--height", "8", "--width", "8", "-o",
                            tmp_path / "c.npz"], "argument --num: must be an integer at least 1, got 0"),
                          (["run", tmp_path, "-o", tmp_path / "o", "--threads", "0"], "argument --threads: must be an integer at least 1, got 0")):
        assert message in _one_error_line(run_derain(*args))


def test_sigterm_finalizes_a_stream_recording_like_ctrl_c(tmp_path, tiny_checkpoint):
    """docker stop / systemctl stop send SIGTERM: the recording so far must be a playable file."""
    import signal
    import subprocess
    import sys
    import time

    source = tmp_path / "in.avi"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 192))
    for i in range(1500):  # far more than the run gets through before the signal
        writer.write(np.full((192, 256, 3), i % 255, np.uint8))
    writer.release()
    process = subprocess.Popen([sys.executable, "-m", "derain", "stream", "--source", str(source), "--sink",
                                str(tmp_path / "out.avi"), "--checkpoint", str(tiny_checkpoint), "--threads", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Signal once the recording has begun (its temporary exists), not after a fixed time: on a loaded
    # machine the interpreter may take longer than any fixed wait to load torch.
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob(".in.*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # a few frames into the recording
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr  # interrupted, as by Ctrl-C
    capture = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert capture.isOpened() and capture.read()[0]  # finalized and playable
    assert 0 < capture.get(cv2.CAP_PROP_FRAME_COUNT) < 1500
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_run_takes_an_onnx_model_through_the_runtime_like_stream(tmp_path, tiny_checkpoint):
    """One road: `run --onnx` uses ONNX Runtime and tiles frames larger than the static input."""
    pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "tiny.onnx"
    exported = run_derain("export", "--checkpoint", tiny_checkpoint, "--height", 32, "--width", 48, "-o", onnx_path)
    assert exported.returncode == 0, exported.stderr
    folder = tmp_path / "photos"
    folder.mkdir()
    _write_image(folder / "big.png", shape=(90, 130, 3))
    _write_video(folder / "clip.avi")
    result = run_derain("run", "--onnx", onnx_path, folder, "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(tmp_path / "out" / "big.png")).shape == (90, 130, 3)
    assert cv2.VideoCapture(str(tmp_path / "out" / "clip.avi")).read()[0]


def test_a_photo_above_max_pixels_is_derained_in_tiles_with_progress(tmp_path, tiny_checkpoint):
    source = tmp_path / "wide.png"
    pixels = _write_image(source, shape=(120, 200, 3))
    result = run_derain("run", source, "-o", tmp_path / "out.png", "--checkpoint", tiny_checkpoint,
                        "--max-pixels", 48 * 48)
    assert result.returncode == 0, result.stderr
    assert "tiles" in result.stderr  # a progress bar over the tiles
    tiled = cv2.imread(str(tmp_path / "out.png"))
    assert tiled.shape == pixels.shape
    whole = run_derain("run", source, "-o", tmp_path / "whole.png", "--checkpoint", tiny_checkpoint)
    assert whole.returncode == 0 and "tiles" not in whole.stderr
    # Tiles are blended: the result is close to the whole frame (the network is not local).
    assert np.abs(tiled.astype(float) - cv2.imread(str(tmp_path / "whole.png")).astype(float)).mean() < 8


def test_every_option_with_a_default_shows_it_in_help():
    from derain.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them here
    for name, command in commands.items():
        text = command.format_help()
        for action in command._actions:  # noqa: SLF001
            if action.default not in (None, False, [], "==SUPPRESS==") and action.option_strings:
                assert f"(default: {action.default}" in " ".join(text.split()), (name, action.dest)
            if action.option_strings and action.dest != "help":
                assert action.help, (name, action.dest)  # and every option says what it is


def _with_small_disk(limit_bytes: int):  # noqa: ANN202
    """preexec_fn: files this process writes cannot grow past `limit_bytes` (EFBIG, as ENOSPC)."""
    def limit() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return limit


@pytest.mark.parametrize("command", ["run", "stream"])
def test_a_video_that_cannot_be_written_fails_in_one_line_and_leaves_nothing(tmp_path, tiny_checkpoint, command):
    import subprocess
    import sys

    source = tmp_path / "in.avi"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(30):
        writer.write(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))  # noise: large JPEG frames
    writer.release()
    out = tmp_path / "out"
    out.mkdir()
    args = (["run", str(source), "-o", str(out / "x.avi")] if command == "run" else
            ["stream", "--source", str(source), "--sink", str(out / "x.avi")])
    result = subprocess.run([sys.executable, "-m", "derain", *args, "--checkpoint", str(tiny_checkpoint)],
                            capture_output=True, text=True, timeout=300, preexec_fn=_with_small_disk(60_000))
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("derain:")]
    assert result.returncode == 1 and len(lines) == 1 and "x.avi: could not write the video" in lines[0], result.stderr
    assert list(out.iterdir()) == []


def test_odd_video_sizes_lose_no_pixel(tmp_path, tiny_checkpoint):
    """OpenCV's writers round 41x31 down to 40x30 (so even a test input cannot be odd): frames of a
    folder, written as a video by the one video sink, keep every pixel."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        _write_image(frames / f"{i}.png", shape=(31, 41, 3), seed=i)
    result = run_derain("stream", "--source", frames, "--sink", tmp_path / "out.avi", "--checkpoint", tiny_checkpoint)
    assert result.returncode == 0, result.stderr
    ok, frame = cv2.VideoCapture(str(tmp_path / "out.avi")).read()
    assert ok and frame.shape[:2] == (32, 42)  # codecs need even sizes: one replicated row and column


def test_sigterm_stops_run_on_a_video_with_nothing_left(tmp_path, tiny_checkpoint):
    import signal
    import subprocess
    import sys
    import time

    source = tmp_path / "in.avi"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 192))
    for i in range(1500):
        writer.write(np.full((192, 256, 3), i % 255, np.uint8))
    writer.release()
    (tmp_path / "out").mkdir()
    process = subprocess.Popen([sys.executable, "-m", "derain", "run", str(source), "-o", str(tmp_path / "out"),
                                "--checkpoint", str(tiny_checkpoint), "--threads", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Signal once the recording has begun (its temporary exists), not after a fixed time: on a loaded
    # machine the interpreter may take longer than any fixed wait to load torch.
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob(".in.*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # a few frames into the recording
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr  # interrupted, as by Ctrl-C
    assert list((tmp_path / "out").iterdir()) == []  # no half video, no temporary


def test_an_unwritable_location_is_one_line_even_when_cleanup_fails(tmp_path, monkeypatch):
    """A read-only folder: the write fails, and so does removing the temporary. Root ignores
    permissions, so the filesystem's two refusals are played by the calls that meet them."""
    from derain.atomic import atomic_path
    from derain.errors import DerainError

    def refuse(self, missing_ok=False):  # noqa: ANN001, ANN202
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(DerainError, match="out.png: cannot write .Read-only file system"):
        with atomic_path(tmp_path / "out.png"):
            raise OSError(30, "Read-only file system")


@pytest.mark.parametrize("output", ["same file", "same folder"])
def test_an_output_that_would_replace_an_input_is_refused_before_any_work(tmp_path, tiny_checkpoint, output):
    photo = tmp_path / "photo.png"
    original = _write_image(photo)
    before = photo.read_bytes()
    target = photo if output == "same file" else tmp_path
    line = _one_error_line(run_derain("run", photo, "-o", target, "--checkpoint", tiny_checkpoint))
    assert "is one of the inputs" in line and str(photo) in line
    assert photo.read_bytes() == before and cv2.imread(str(photo)).shape == original.shape
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_a_phone_jpeg_with_exif_orientation_comes_back_upright(tmp_path, tiny_checkpoint):
    """EXIF orientation 6: the stored pixels are turned; a viewer shows them 90 degrees clockwise."""
    from PIL import Image as PILImage

    stored = np.zeros((40, 64, 3), np.uint8)
    stored[:, :32] = 255  # left half white as stored: the top half once shown upright
    exif = PILImage.Exif()
    exif[0x0112] = 6
    PILImage.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    result = run_derain("run", tmp_path / "phone.jpg", "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint)
    assert result.returncode == 0, result.stderr
    shown = PILImage.open(tmp_path / "phone.jpg")
    from PIL import ImageOps

    upright = np.asarray(ImageOps.exif_transpose(shown))
    output = cv2.imread(str(tmp_path / "out" / "phone.jpg"), cv2.IMREAD_UNCHANGED)
    assert output.shape == upright.shape == (64, 40, 3)  # as a viewer shows the input
    assert output[:32].mean() > output[32:].mean() + 50  # the white half is on top, as shown


def test_a_huge_image_is_refused_from_its_header_before_decoding(tmp_path, tiny_checkpoint):
    """A 20000x20000 PNG of one colour is a few hundred KB; decoded as float32 RGB it is 4.5 GiB."""
    import zlib

    huge = tmp_path / "huge.png"
    row = b"\x00" + bytes(20_000)  # filter byte + one gray row
    chunk = lambda kind, data: (len(data).to_bytes(4, "big") + kind + data  # noqa: E731
                                + zlib.crc32(kind + data).to_bytes(4, "big"))
    header = (20_000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * 20_000, 9))
                     + chunk(b"IEND", b""))
    assert huge.stat().st_size < 2_000_000
    line = _one_error_line(run_derain("run", huge, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint))
    assert str(huge) in line and "20000x20000 is 400 MP" in line and "--max-image-pixels" in line
    small = tmp_path / "small.png"
    _write_image(small, shape=(30, 40, 3))
    line = _one_error_line(run_derain("run", small, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint,
                                      "--max-image-pixels", "1000"))
    assert "40x30 is 0 MP" in line and _no_files(tmp_path / "out")


def test_a_png_named_jpg_is_read_by_its_content(tmp_path, tiny_checkpoint):
    pixels = _write_image(tmp_path / "real.png")
    misnamed = tmp_path / "photo.jpg"
    misnamed.write_bytes((tmp_path / "real.png").read_bytes())
    result = run_derain("run", misnamed, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint)
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(tmp_path / "out" / "photo.jpg")).shape == pixels.shape


@pytest.mark.parametrize("args,names", [
    (["train", "--no-such-option", "-o", "x"], "unrecognized arguments: --no-such-option"),
    (["export", "--height", "100000", "--width", "100000", "-o", "m.onnx"], "--height 100000: from 1 to 8192"),
    (["export", "--height", "720", "--width", "0", "-o", "m.onnx"], "argument --width: must be an integer at least 1, got 0"),
    (["bench", "--sizes", "0x0"], "--sizes 0x0: 0x0 has no pixels"),
    (["run", "in.png", "-o", "out", "--max-image-pixels", "0"], "argument --max-image-pixels: must be an integer at least 1, got 0"),
])
def test_bad_values_are_one_derain_error_line_and_exit_1(tmp_path, args, names):
    result = subprocess_in(tmp_path, args)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("derain: error: ") and names in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def subprocess_in(folder: Path, args: list[str]):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "derain", *args], capture_output=True, text=True, cwd=folder,
                          timeout=300)


def _pairs(folder: Path, sizes=((40, 48), (40, 48)), corrupt_clean: bool = False) -> Path:
    for sub, size in zip(("rain", "norain"), sizes):
        (folder / sub).mkdir(parents=True)
        _write_image(folder / sub / "1.png", shape=(*size, 3))
    if corrupt_clean:
        (folder / "norain" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


def _dynamic_onnx(path: Path) -> Path:
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("rainy", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("derained", TensorProto.FLOAT, ["n", 3, "h", "w"])
    save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["rainy"], ["derained"])], "g", [x], [y]),
                           opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("case,names", [
    ("train --mix 1,a", "--mix '1,a'"),
    ("train --lr -1", "argument --lr: must be a number above 0, got -1"),
    ("train --patches 64:0.5,128", "--patches '64:0.5,128'"),
    ("train --patches 64:0.5,128:0.4", "the fractions must sum to 1"),
    ("train --time-budget 0", "argument --time-budget: '0' is not a duration"),
    ("train --time-budget soon", "'soon' is not a duration"),
    ("train --threads 0", "argument --threads: must be an integer at least 1, got 0"),
    ("train --batch 0", "argument --batch: must be an integer at least 1, got 0"),
    ("train pairs of two sizes", "a pair must be one size"),
    ("train a corrupt clean image", "cannot read image"),
    ("train --resume a corrupt run", "not a derain training checkpoint"),
    ("eval pairs of two sizes", "a pair must be one size"),
    ("calib --num 0", "argument --num: must be an integer at least 1, got 0"),
    ("calib --height 0", "argument --height: must be an integer at least 1, got 0"),
    ("quantize a dynamic ONNX", "dynamic input shape"),
    ("validate --max-loss-db -1", "argument --max-loss-db: must be a number at least 0, got -1"),
])
def test_each_command_refuses_bad_values_in_one_line(tmp_path, tiny_checkpoint, case, names):
    """The real command line, each bad value: one `derain: error:` line naming it, exit 1, no traceback."""
    run_dir = tmp_path / "run"
    base = ["train", "--model", "tiny", "--clean", "skimage", "--steps", "1", "-o", str(run_dir)]
    words = case.split()
    if case == "train pairs of two sizes":
        args = [*base, "--pairs", str(_pairs(tmp_path / "pairs", ((40, 48), (40, 50))))]
    elif case == "train a corrupt clean image":
        args = [*base, "--pairs", str(_pairs(tmp_path / "pairs", corrupt_clean=True))]
    elif case == "train --resume a corrupt run":
        run_dir.mkdir()
        (run_dir / "last.pt").write_bytes(b"not a checkpoint")
        args = [*base, "--resume"]
    elif case == "eval pairs of two sizes":
        args = ["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(_pairs(tmp_path / "pairs", ((40, 48), (44, 48))))]
    elif words[0] == "calib":
        (tmp_path / "frames").mkdir()
        _write_image(tmp_path / "frames" / "a.png")
        args = ["calib", "--source", str(tmp_path / "frames"), "--num", "4", "--height", "32", "--width", "32",
                "-o", str(tmp_path / "c.npz"), *words[1:]]
    elif case == "quantize a dynamic ONNX":
        np.savez(tmp_path / "c.npz", rainy=np.zeros((1, 3, 32, 32), np.float32))
        args = ["quantize", str(_dynamic_onnx(tmp_path / "d.onnx")), "--calib", str(tmp_path / "c.npz"),
                "-o", str(tmp_path / "q.onnx")]
    elif words[0] == "validate":
        args = ["validate", "--onnx", str(_dynamic_onnx(tmp_path / "d.onnx")), *words[1:]]
    else:
        args = [*base, *words[1:]]
    result = subprocess_in(tmp_path, args)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("derain: error: ") and names in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    written = {"calib": tmp_path / "c.npz", "quantize": tmp_path / "q.onnx"}.get(words[0])
    assert written is None or not written.exists()  # nothing half-written


@pytest.mark.parametrize("command", ["export", "quantize"])
def test_a_full_disk_during_long_work_leaves_the_previous_file_intact(tmp_path, tiny_checkpoint, command):
    """The file a previous run left (an ONNX, a Q/DQ ONNX) survives a run that the disk stops
    halfway through its write: one line, exit 1, no temporary left beside it."""
    import subprocess
    import sys

    derain = [sys.executable, "-m", "derain"]
    onnx, qdq = tmp_path / "m.onnx", tmp_path / "q.onnx"
    export = [*derain, "export", "--checkpoint", str(tiny_checkpoint), "--height", "32", "--width", "32", "-o", str(onnx)]
    np.savez(tmp_path / "c.npz", rainy=np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32))
    quantize = [*derain, "quantize", str(onnx), "--calib", str(tmp_path / "c.npz"), "-o", str(qdq)]
    for command_line in (export, quantize):
        assert subprocess.run(command_line, capture_output=True, timeout=300).returncode == 0
    command_line, kept = (export, onnx) if command == "export" else (quantize, qdq)
    before = kept.read_bytes()
    result = subprocess.run(command_line, capture_output=True, text=True, timeout=300,
                            preexec_fn=_with_small_disk(len(before) // 2))
    lines = [line for line in result.stderr.splitlines() if line.startswith("derain:")]
    assert result.returncode == 1 and len(lines) == 1 and "cannot write" in lines[0], result.stderr
    assert kept.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_eval_all_without_a_data_folder_says_how_to_give_one(monkeypatch, tmp_path):
    monkeypatch.delenv("DERAIN_DATA", raising=False)
    assert _one_error_line(run_derain("eval", "--data", "all")) == (
        "derain: error: --data all: no data folder (give --data-root FOLDER or set DERAIN_DATA; "
        "the layout is in docs/training.md)")
    monkeypatch.setenv("DERAIN_DATA", str(tmp_path))  # the variable is the default
    assert str(tmp_path) in _one_error_line(run_derain("eval", "--data", "all"))


@pytest.mark.parametrize("argv", [
    ["stream", "--source", "a.mp4", "--sink", "null", "--queue", "0"],  # once hung with `in 1 out 0`
    ["stream", "--source", "a.mp4", "--sink", "null", "--realtime", "--queue", "0"],  # once an IndexError traceback
    ["stream", "--batch-timeout-ms", "-1"], ["run", "x.png", "-o", "y.png", "--threads", "0"],
    ["run", "x.png", "-o", "y.png", "--max-image-pixels", "-5"], ["export", "-o", "m.onnx", "--height", "0"],
    ["train", "--lr", "0"], ["train", "--haze", "1"], ["train", "--time-budget", "0s"], ["train", "--steps", "nan"],
    ["bench", "--iterations", "0"], ["triton", "--instances", "0"], ["calib", "--seed", "-1"],
    ["deploy", "--max-loss-db", "inf"], ["build", "m.onnx", "--workspace-mib", "0"],
])
def test_a_numeric_option_no_command_can_use_is_refused_where_it_is_parsed(argv, capsys):
    from derain.cli import main

    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"derain: error: argument {argv[-2]}") and argv[-1] in error


def test_every_numeric_option_of_every_command_has_a_checked_type():
    """No option is a bare int or float (argparse takes 0, -1, nan and inf for those): each goes
    through the shared types of derain/cli.py, or has a fixed list of choices."""
    from derain.cli import build_parser

    def actions(parser):
        for action in parser._actions:
            yield parser.prog, action
            for sub in getattr(action, "choices", None) or {}:
                if isinstance(action.choices, dict):
                    yield from actions(action.choices[sub])

    bare = [f"{prog} {action.option_strings[0]}" for prog, action in actions(build_parser())
            if action.type in (int, float) and action.choices is None]
    assert bare == []


@pytest.mark.parametrize("content,why", [("not a model", "DecodeError"),
                                         ("x\n", "no graph in it")])  # protobuf reads this as an empty model
@pytest.mark.parametrize("command", ["build", "info --onnx", "lint", "quantize"])
def test_a_file_that_is_not_onnx_is_one_line(tmp_path, content, why, command):
    model = tmp_path / "model.onnx"
    model.write_text(content)
    output = ["-o", tmp_path / "q.onnx"] if command == "quantize" else []  # its output is required
    assert _one_error_line(run_derain(*command.split(), *output, model)) == f"derain: error: {model}: not an ONNX model ({why})"
    assert sorted(tmp_path.iterdir()) == [model]
