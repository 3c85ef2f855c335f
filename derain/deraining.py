"""The main job: derain image files, folders and video files. The same road as `derain stream`:
a runtime backend (torch with the bundled checkpoint by default, an ONNX model on ONNX Runtime, or
a TensorRT engine), the runtime's video source and sink. Outputs keep the input's size and format;
every file is written atomically, and nothing is left of a video that fails halfway."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .atomic import ensure_directory
from .data import DEFAULT_MAX_IMAGE_PIXELS
from .data.io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, files_in, is_image, is_video, read_image, write_image
from .data.video import VideoReader
from .errors import DerainError
from .runtime.backend import Backend
from .runtime.sinks import VideoFileSink

_SUPPORTED = f"images: {' '.join(IMAGE_EXTENSIONS)}; videos: {' '.join(VIDEO_EXTENSIONS)}"


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path

    @property
    def video(self) -> bool:
        return is_video(self.source)


def _sources(path: Path) -> list[Path]:
    if path.is_dir():
        files = files_in(path, videos=True)
        if not files:
            raise DerainError(f"{path}: folder has no images or videos ({_SUPPORTED})")
        return files
    if not path.exists():
        raise DerainError(f"{path}: no such file or folder")
    if not (is_image(path) or is_video(path)):
        raise DerainError(f"{path}: unsupported file type '{path.suffix}' ({_SUPPORTED})")
    return [path]


def plan_jobs(inputs: list[Path], output: Path) -> list[Job]:
    """Where each input goes. One input file with an output that has a suffix: that file.
    Otherwise `output` is a folder and outputs keep their names."""
    sources = [source for path in inputs for source in _sources(path)]
    if len(inputs) == 1 and inputs[0].is_file() and output.suffix and not output.is_dir():
        source = sources[0]
        if is_image(source) != is_image(output) or not (is_image(output) or is_video(output)):
            kind = "an image" if is_image(source) else "a video"
            raise DerainError(f"{output}: output must be {kind} file like {source.name} ({_SUPPORTED})")
        return _never_over_an_input([Job(source, output)], sources)
    if output.is_file():
        raise DerainError(f"{output}: is a file; give a folder for folder or multiple inputs")
    jobs = [Job(source, output / source.name) for source in sources]
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.target in seen:
            raise DerainError(f"{job.source}: would overwrite the output of {seen[job.target]} ({job.target})")
        seen[job.target] = job.source
    return _never_over_an_input(jobs, sources)


def _never_over_an_input(jobs: list[Job], sources: list[Path]) -> list[Job]:
    """Refuse, before any work, an output that would replace one of the inputs (the user's original)."""
    originals = {source.resolve() for source in sources}
    for job in jobs:
        if job.target.resolve() in originals:
            raise DerainError(f"{job.target}: is one of the inputs; derain never overwrites an input "
                              "(give another output file or folder)")
    return jobs


def derain_image(backend: Backend, job: Job, max_image_pixels: int) -> None:
    image = read_image(job.source, max_image_pixels)
    write_image(job.target, image.with_rgb(np.clip(backend.infer_rgb(image.rgb), 0.0, 1.0)))


def derain_video(backend: Backend, job: Job) -> None:
    """Frame by frame, into a file with the source's rate, timestamps, rotation, audio and subtitles."""
    source = VideoReader(job.source)
    sink = None
    try:
        frames = tqdm(source, total=source.frames or None, desc=job.source.name, unit="frame")
        for frame in frames:
            derained = backend.infer([frame])[0]
            if sink is None:
                sink = VideoFileSink(job.target, float(source.rate), (derained.shape[1], derained.shape[0]), source)
            sink.write(derained, source.pts)
        decoded = 0 if sink is None else sink.frames
        # A cut-off file decodes up to the cut, then "ends". Containers' frame counts are loose (an AVI
        # with audio said 26 for 24), so only a clear shortfall is an error.
        if source.frames and decoded < 0.9 * source.frames - 2:
            raise DerainError(f"{job.source}: truncated or damaged video: {decoded} of its {source.frames} frames decode")
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        source.close()
    if sink is None:
        raise DerainError(f"{job.source}: video has no readable frames")
    sink.close()


def verify_inputs(jobs: list[Job], max_image_pixels: int) -> None:
    """Decode every image and the first frame of every video, so that a corrupt file stops the run
    before any output is written, not halfway through a folder."""
    for job in tqdm(jobs, desc="checking inputs", unit="file", disable=len(jobs) < 8):
        if not job.video:
            read_image(job.source, max_image_pixels)
            continue
        VideoReader(job.source).close()  # opening decodes the first frame


def derain_paths(inputs: list[Path], output: Path, open_backend: Callable[[], Backend],
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> list[Job]:
    """Check every input and the output first, then open the backend and derain; returns the jobs."""
    jobs = plan_jobs(inputs, output)
    verify_inputs(jobs, max_image_pixels)
    for folder in {job.target.parent for job in jobs}:
        ensure_directory(folder)
    with open_backend() as backend:
        images = [job for job in jobs if not job.video]
        for job in tqdm(images, desc="images", unit="image", disable=len(images) < 2):
            derain_image(backend, job, max_image_pixels)
        for job in jobs:
            if job.video:
                derain_video(backend, job)
    return jobs
