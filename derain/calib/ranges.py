"""INT8 activation ranges that do not depend on what the user calibrates with.

Static INT8 ranges follow the calibration frames: calibrated on a clip of light rain, heavy rain's
activations are clipped and the INT8 model leaves the streaks in (6.4 dB lost on Rain100H). So
the ranges start from reference frames that ship with the package (`reference/`: 256x256 crops of
train-split pairs, heavy and light synthetic rain and real rain), and the user's frames may widen a
tensor's range but never narrow it. The reference pairs are also what `derain deploy` checks an
INT8 model on before it builds an engine (validate/reference.py).

A range is symmetric: the 99.99th percentile of |x| over the frames, from ONNX Runtime's own
percentile calibrator, fed one frame at a time so that its histograms merge and memory stays flat
at 720p.
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.io import files_in, read_image
from ..data.synthetic import add_rain
from ..errors import DerainError
from ..export.names import INPUT_NAME
from .frames import spread_indices, tile

REFERENCE = Path(__file__).parent / "reference"
PERCENTILE = 99.99
SYNTHETIC_FRAMES = 16  # heavy-rain copies of a frame set: the range of a tensor settles by then

Ranges = dict[str, float]  # tensor name -> symmetric range: INT8 covers [-r, r]


@contextmanager
def quiet_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantizer logs "consider pre-processing" warnings on the root logger (not for
    us: onnxsim already simplified the graph) and its histogram calibrators print to stdout; either
    would break the one-line output contract."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def reference_groups() -> dict[str, Path]:
    """The shipped pair folders by the rain they show: name -> folder with rain/ and norain/."""
    return {folder.name: folder for folder in sorted(REFERENCE.iterdir()) if (folder / "rain").is_dir()}


def reference_frames(height: int, width: int, kind: str = "rain", groups: tuple[str, ...] | None = None) -> np.ndarray:
    """The shipped crops of `kind` ("rain" or "norain"; of `groups`, default all) as an
    (N, 3, height, width) calibration batch, cut the way `derain calib` cuts a user's frames
    (reflect-padded where the model is larger, a fixed window where smaller)."""
    rng = np.random.default_rng(0)
    folders = reference_groups()
    crops = [tile(read_image(path).rgb, height, width, rng).transpose(2, 0, 1)
             for group in (groups or tuple(folders)) for path in files_in(folders[group] / kind)]
    return np.ascontiguousarray(np.stack(crops), dtype=np.float32)


def with_heavy_rain(frames: np.ndarray, count: int = SYNTHETIC_FRAMES, seed: int = 0) -> np.ndarray:
    """Up to `count` of the frames, spread over them, under synthetic heavy rain (data/synthetic.py):
    the heaviest rain the ranges must hold, whatever weather the frames were taken in."""
    rng = np.random.default_rng(seed)
    chosen = frames[spread_indices(len(frames), count)]
    return np.stack([add_rain(frame.transpose(1, 2, 0), rng, "heavy").transpose(2, 0, 1) for frame in chosen])


def default_ranges(model_path: str | Path, size: tuple[int, int], calibration: np.ndarray | None,
                   op_types: tuple[str, ...], percentile: float = PERCENTILE) -> tuple[Ranges, str]:
    """derain's INT8 ranges and a line saying what made them: the reference's rainy crops, its
    clean crops under synthetic heavy rain, and, where given, the user's frames and the same frames
    under synthetic heavy rain; per tensor the widest of the four. `size` is the model's input
    (height, width), which the reference crops are cut to. The synthetic rain is there
    because a dozen crops hold too few heavy streaks to set every range; benchmarks/int8_matrix.py
    measures the result for every calibration source."""
    ranges, made_of = reference_ranges(str(model_path), Path(model_path).stat().st_mtime_ns, size, op_types,
                                       percentile)
    if calibration is None:
        return dict(ranges), made_of
    sets = {"calibration": calibration, "calibration + synthetic heavy rain": with_heavy_rain(calibration)}
    for label, frames in sets.items():
        ranges = widen(ranges, activation_ranges(model_path, frames, op_types, percentile, label))
    return ranges, "; ".join([made_of, *(f"{label} ({len(frames)} frames)" for label, frames in sets.items())])


@lru_cache(maxsize=4)
def reference_ranges(model_path: str, mtime_ns: int, size: tuple[int, int], op_types: tuple[str, ...],
                     percentile: float) -> tuple[Ranges, str]:
    """The package's part of the ranges, the same for every user of one model file: kept for the
    process (a 720p frame takes seconds of histograms), keyed by the file's path and time."""
    height, width = size
    sets = {"reference rain": reference_frames(height, width),
            "reference + synthetic heavy rain": with_heavy_rain(reference_frames(height, width, "norain"))}
    ranges: Ranges = {}
    for label, frames in sets.items():
        ranges = widen(ranges, activation_ranges(model_path, frames, op_types, percentile, label))
    return ranges, "; ".join(f"{label} ({len(frames)} frames)" for label, frames in sets.items())


def activation_ranges(model_path: str | Path, frames: np.ndarray, op_types: tuple[str, ...],
                      percentile: float = PERCENTILE, label: str = "ranges") -> Ranges:
    """The range of every activation read or written by `op_types` nodes, as ONNX Runtime's
    percentile calibrator computes it for quantize_static (the same tensors, the same histograms)."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    from google.protobuf.message import DecodeError

    with tempfile.TemporaryDirectory(prefix="derain-ranges-") as folder:
        augmented = Path(folder) / "augmented.onnx"
        try:
            calibrator = create_calibrator(Path(model_path), list(op_types), augmented_model_path=str(augmented),
                                           calibrate_method=CalibrationMethod.Percentile,
                                           extra_options={"symmetric": True, "percentile": percentile})
        except DecodeError as error:  # ONNX Runtime's copy of the model, written short (a full disk), reads back broken
            raise DerainError(f"{augmented}: cannot write the calibration's copy of the model") from error
        # Without ONNX Runtime's memory arena, which grew frame after frame at 720p (two frames:
        # 3.65 GB with it, 2.92 GB without; benchmarks/int8_memory.py measures a whole quantize).
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL  # as ORT's own
        options.enable_cpu_mem_arena = False
        calibrator.infer_session = onnxruntime.InferenceSession(calibrator.augmented_model_path, options,
                                                                providers=calibrator.execution_providers)
        with quiet_quantizer():
            for frame in tqdm(frames, desc=label, unit="frame", leave=False):
                calibrator.collect_data(_OneFrame(frame))  # histograms merge frame by frame
            data = calibrator.compute_data()
    return {name: float(max(abs(float(data[name].range_value[0])), abs(float(data[name].range_value[1]))))
            for name in data}


def widen(reference: Ranges, user: Ranges) -> Ranges:
    """Per tensor, the larger of the two ranges: the user's frames can only widen the reference."""
    return {name: max(reference.get(name, 0.0), user.get(name, 0.0)) for name in reference.keys() | user.keys()}


class _OneFrame:
    """A CalibrationDataReader in all but its (lazily imported) base class: collect_data only
    calls get_next."""

    def __init__(self, frame: np.ndarray) -> None:
        self.feeds = iter([{INPUT_NAME: frame[None]}])

    def get_next(self) -> dict | None:
        return next(self.feeds, None)
