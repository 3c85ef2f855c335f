"""How much PSNR do FP16 and INT8 lose against FP32? One Polygraphy run over paired images feeds
both the ground-truth scores (PSNR/SSIM, Y channel) and the output comparison statistics.

Each image is cut to the model's static input size (centre crop, reflect-padded when smaller):
scores are on those crops, and the report says so."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_path
from ..data.pairs import Pair
from ..data.io import Image, pad_to, write_image
from ..data.metrics import psnr_y, ssim_y
from ..engines.store import check_engine
from ..errors import DerainError
from ..export.names import INPUT_NAME, OUTPUT_NAME
from ..export.comparison import output_stats, quiet_polygraphy, simple_compare

REFERENCE = "fp32"


@dataclass
class Report:
    data: str
    input_shape: list[int]
    max_loss_db: float
    precisions: dict[str, dict] = field(default_factory=dict)
    passed: bool = True
    worst: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"data": self.data, "crop": "centre crop to the model input", "input_shape": self.input_shape,
                "images": self.precisions[REFERENCE]["images"], "max_loss_db": self.max_loss_db,
                "passed": self.passed, "precisions": self.precisions, "worst": self.worst}


def centre_crop(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    rgb = pad_to(rgb, height, width)
    top, left = (rgb.shape[0] - height) // 2, (rgb.shape[1] - width) // 2
    return rgb[top : top + height, left : left + width]


def backend_runner(open_backend, name: str):  # noqa: ANN001, ANN201 - polygraphy is imported lazily
    """A Polygraphy runner around one of derain's own backends, so comparisons test the code that
    ships (the TensorRT backend's buffers, copies and stream), not Polygraphy's TrtRunner."""
    from polygraphy.backend.base import BaseRunner
    from polygraphy.common import TensorMetadata

    class BackendRunner(BaseRunner):
        def __init__(self) -> None:
            super().__init__(name=name)
            self.backend = None

        def activate_impl(self) -> None:
            self.backend = open_backend()

        def get_input_metadata_impl(self) -> TensorMetadata:
            return TensorMetadata().add(INPUT_NAME, np.float32, self.backend.input_shape)

        def infer_impl(self, feed_dict: dict) -> dict:
            started = time.perf_counter()
            output = self.backend.run(feed_dict[INPUT_NAME])
            self.inference_time = time.perf_counter() - started
            return {OUTPUT_NAME: output}

        def deactivate_impl(self) -> None:
            self.backend.close()

    return BackendRunner()


def _runner(precision: str, path: Path):  # noqa: ANN202 - polygraphy is imported lazily
    if precision == "engine":
        from ..runtime.tensorrt_backend import TensorRTBackend

        check_engine(path)  # built for this GPU and TensorRT, or a one-line error (also without TensorRT)
        return backend_runner(lambda: TensorRTBackend(path), precision)
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    return OnnxrtRunner(SessionFromOnnx(str(path), providers=["CPUExecutionProvider"]), name=precision)


def input_shape(onnx_path: Path) -> list[int]:
    from ..export.graph import read_onnx

    graph = read_onnx(onnx_path).graph
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or min(dims) <= 0:
        raise DerainError(f"{onnx_path}: expected a static (N, 3, H, W) input, got {dims}")
    return dims


def validate(models: dict[str, Path], pairs: list[Pair], max_loss_db: float, data: str) -> tuple[Report, dict]:
    """models: precision -> ONNX (or engine) path, with "fp32" the reference. Returns the report and
    the outputs of the worst image, for the crops figure."""
    import onnxruntime
    from polygraphy.comparator import Comparator

    onnxruntime.set_default_logger_severity(3)  # errors only: FP16 graphs log a warning per FP16 Mul on CPU
    for precision, path in models.items():
        if not Path(path).is_file():
            raise DerainError(f"{path}: no such {precision} model")
    shape = input_shape(models[REFERENCE])
    batch, _, height, width = shape
    crops = [(centre_crop(rainy, height, width), centre_crop(clean, height, width)) for rainy, clean in pairs]
    feeds = [{INPUT_NAME: np.repeat(rainy.transpose(2, 0, 1)[None], batch, axis=0)} for rainy, _ in crops]
    with quiet_polygraphy():
        runners = [_runner(p, Path(path)) for p, path in models.items()]
        results = Comparator.run(runners, data_loader=tqdm(feeds, desc=f"validate ({len(runners)} models)",
                                                              unit="image", leave=False))
    outputs = {name: [np.clip(it[OUTPUT_NAME][0].transpose(1, 2, 0), 0, 1) for it in iterations]
               for name, iterations in results.items()}

    report = Report(data=data, input_shape=shape, max_loss_db=max_loss_db)
    per_image = {}
    for precision, images in outputs.items():
        psnrs = [psnr_y(out, clean) for out, (_, clean) in zip(images, crops)]
        per_image[precision] = np.array(psnrs)
        report.precisions[precision] = {"images": len(images), "psnr": round(float(np.mean(psnrs)), 4),
                                        "ssim": round(float(np.mean([ssim_y(o, c) for o, (_, c) in
                                                                     zip(images, crops)])), 5)}
    reference_psnr = report.precisions[REFERENCE]["psnr"]
    worst_loss, worst = -np.inf, (REFERENCE, 0)
    for precision in outputs:
        if precision == REFERENCE:
            continue
        entry = report.precisions[precision]
        entry["loss_db"] = round(reference_psnr - entry["psnr"], 4)
        entry["passed"] = entry["loss_db"] <= max_loss_db
        report.passed &= entry["passed"]
        with quiet_polygraphy():
            accuracy = Comparator.compare_accuracy(results, compare_func=simple_compare(),
                                                   comparisons=[(list(models).index(REFERENCE),
                                                                 list(models).index(precision))])
        stats = output_stats(accuracy, OUTPUT_NAME)
        entry["vs_fp32"] = {"max_abs": float(max(s.max_absdiff for s in stats)),
                            "median_abs": float(np.median([s.median_absdiff for s in stats]))}
        losses = per_image[REFERENCE] - per_image[precision]
        if losses.max() > worst_loss:
            worst_loss, worst = float(losses.max()), (precision, int(losses.argmax()))
    precision, index = worst
    report.worst = {"precision": precision, "image": index, "loss_db": round(worst_loss, 4)} if worst_loss > -np.inf \
        else {}
    panels = {"rainy": crops[index][0], REFERENCE: outputs[REFERENCE][index], precision: outputs[precision][index],
              "clean": crops[index][1]}
    return report, panels


def write_report(report: Report, panels: dict[str, np.ndarray], folder: str | Path) -> list[Path]:
    """report.json, report.md, psnr.png (bar plot) and worst.png (side-by-side crops)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    written = [folder / "report.json", folder / "report.md", folder / "psnr.png", folder / "worst.png"]
    with atomic_path(written[0]) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2))
    lines = [f"# Precision report: {'PASS' if report.passed else 'FAIL'}", "",
             f"Data: {report.data} ({report.to_dict()['images']} images, centre crops of {report.input_shape[2]}x"
             f"{report.input_shape[3]}); PSNR/SSIM on the Y channel; allowed loss {report.max_loss_db} dB.", "",
             "| precision | PSNR (dB) | SSIM | loss vs fp32 (dB) | max abs err | median abs err | pass |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for precision, entry in report.precisions.items():
        vs = entry.get("vs_fp32", {})
        lines.append(f"| {precision} | {entry['psnr']:.3f} | {entry['ssim']:.4f} | {entry.get('loss_db', 0):.3f} | "
                     f"{vs.get('max_abs', 0):.3g} | {vs.get('median_abs', 0):.3g} | "
                     f"{'yes' if entry.get('passed', True) else 'NO'} |")
    with atomic_path(written[1]) as tmp:
        tmp.write_text("\n".join(lines) + "\n")

    figure, axis = plt.subplots(figsize=(5, 3.2))
    names = list(report.precisions)
    values = [report.precisions[n]["psnr"] for n in names]
    bars = axis.bar(names, values, color=["#4c72b0" if n == REFERENCE else "#dd8452" for n in names])
    for bar, name in zip(bars, names):
        loss = report.precisions[name].get("loss_db")
        label = f"{bar.get_height():.2f}" + (f"\n({-loss:+.3f} dB)" if loss is not None else "")
        axis.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    axis.set_ylim(min(values) - 3, max(values) + 2)
    axis.set_ylabel("PSNR (dB, Y)")
    axis.set_title(f"{report.data}: PSNR per precision")
    figure.tight_layout()
    with atomic_path(written[2]) as tmp:
        figure.savefig(tmp, dpi=120)
    plt.close(figure)

    write_image(written[3], Image(_labelled_strip(panels), np.dtype(np.uint8)))
    return written


def _labelled_strip(panels: dict[str, np.ndarray]) -> np.ndarray:
    """The panels side by side, each with its name written in its corner."""
    import cv2

    labelled = []
    for name, rgb in panels.items():
        pixels = np.ascontiguousarray(np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8))  # putText wants 8-bit
        for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):  # outlined: readable anywhere
            cv2.putText(pixels, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, thickness, cv2.LINE_AA)
        labelled.append(pixels)
    return np.concatenate(labelled, axis=1).astype(np.float32) / 255.0
