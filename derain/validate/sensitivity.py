"""Where an INT8 model's loss comes from, tensor by tensor (`derain quantize --sensitivity DIR`).

For every activation the Q/DQ graph quantizes: the range it was given (scale x 127) beside the
range of the calibration frames alone and of heavy rain (the shipped heavy reference crops); the
quantization error of that tensor alone (SQNR, dB: 20 log10 |x| / |x - qdq(x)|) on the reference's
light and heavy rain; and the PSNR the whole model loses against FP32 on the reference pairs when
that activation alone is quantized (weights stay INT8 in every variant, so the weights-only model
is the baseline). Polygraphy's `debug precision` cannot do this for us: it pins layer precisions,
which strongly typed builds forbid; so each variant is the same ONNX with the other activations'
Q/DQ pairs bypassed, run on ONNX Runtime.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_path
from ..calib.ranges import Ranges, activation_ranges, reference_frames, reference_groups
from ..data.pairs import load_pairs
from ..export.graph import constant_values, node_maps
from ..export.names import INPUT_NAME
from .report import validate

HEAVY, LIGHT = ("heavy", "heavy-dense"), ("light",)  # reference groups standing for each kind of rain


@dataclass
class TensorSensitivity:
    tensor: str
    consumer: str  # the node that reads it: what to look for in the graph
    range_used: float
    range_calibration: float | None  # the calibration frames alone (None: none given)
    range_heavy_rain: float
    sqnr_light_db: float
    sqnr_heavy_db: float
    loss_alone_db: float  # PSNR lost on the reference pairs with this activation alone quantized, over weights-only


def _activation_qdq(model) -> dict[str, tuple]:  # noqa: ANN001 - onnx.ModelProto
    """Activation -> (QuantizeLinear, its DequantizeLinear, scale): Q/DQ pairs on non-weights."""
    constants = constant_values(model)
    _, readers = node_maps(model)
    pairs = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in constants:
            dequantize = next(r for r in readers[node.output[0]] if r.op_type == "DequantizeLinear")
            pairs[node.input[0]] = (node, dequantize, float(constants[node.input[1]]))
    return pairs


def _keep_only(model, pairs: dict[str, tuple], kept: set[str]):  # noqa: ANN001, ANN202 - onnx.ModelProto
    """A copy of the Q/DQ model whose activation Q/DQ pairs outside `kept` are bypassed."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    bypass = {dq.output[0]: tensor for tensor, (_, dq, _) in pairs.items() if tensor not in kept}
    removed = {n.name for tensor, (q, dq, _) in pairs.items() if tensor not in kept for n in (q, dq)}
    nodes = [n for n in copy.graph.node if n.name not in removed]
    for node in nodes:
        node.input[:] = [bypass.get(name, name) for name in node.input]
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy


def _sqnr(x: np.ndarray, scale: float) -> float:
    quantized = np.clip(np.round(x / scale), -128, 127) * scale
    noise = np.linalg.norm(x - quantized)
    return float("inf") if noise == 0 else float(20 * np.log10(np.linalg.norm(x) / noise))


def _mean_sqnr(fp32: Path, scales: dict[str, float], frames: np.ndarray) -> dict[str, float]:
    """Per tensor, the mean over `frames` of its SQNR at `scale`, from the FP32 model's values (the
    tensors made graph outputs for the run; one frame's values held at a time)."""
    import onnx
    import onnxruntime

    model = onnx.load(str(fp32))
    tensors = list(scales)
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in tensors)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sqnrs: dict[str, list[float]] = {name: [] for name in tensors}
    for frame in frames:
        for name, value in zip(tensors, session.run(tensors, {INPUT_NAME: frame[None]})):
            sqnrs[name].append(_sqnr(value.astype(np.float32), scales[name]))
    return {name: float(np.mean(values)) for name, values in sqnrs.items()}


def sensitivity(fp32: Path, int8: Path, calibration: np.ndarray | None) -> tuple[list[TensorSensitivity], dict]:
    """Every quantized activation's numbers, the most harmful (largest loss alone) first, and the
    baselines (all activations quantized, none)."""
    import onnx

    from ..calib.quantize import QUANTIZED_OPS
    from .report import input_shape

    _, _, height, width = input_shape(fp32)
    model = onnx.load(str(int8))
    pairs = _activation_qdq(model)
    readers = {name: n.name for n in model.graph.node for name in n.input}
    heavy_frames = reference_frames(height, width, groups=HEAVY)
    light_frames = reference_frames(height, width, groups=LIGHT)
    heavy_ranges = activation_ranges(fp32, heavy_frames, QUANTIZED_OPS, label="heavy rain ranges")
    calib_ranges: Ranges = {} if calibration is None else activation_ranges(fp32, calibration, QUANTIZED_OPS,
                                                                            label="calibration ranges")
    tensors = list(pairs)
    scales = {t: pairs[t][2] for t in tensors}
    sqnr_heavy, sqnr_light = _mean_sqnr(fp32, scales, heavy_frames), _mean_sqnr(fp32, scales, light_frames)
    evaluation = [pair for group in (*HEAVY, *LIGHT) for pair in load_pairs(reference_groups()[group])]
    with tempfile.TemporaryDirectory(prefix="derain-sensitivity-") as folder:
        variants = {"all": set(tensors), "weights only": set()} | {t: {t} for t in tensors}
        losses = {}
        for name, kept in tqdm(variants.items(), desc="sensitivity", unit="model"):
            path = Path(folder) / "variant.onnx"
            onnx.save(_keep_only(model, pairs, kept), str(path))
            report, _ = validate({"fp32": fp32, "int8": path}, evaluation, max_loss_db=float("inf"), data="reference")
            losses[name] = report.precisions["int8"]["loss_db"]
    rows = [TensorSensitivity(
        tensor=t, consumer=readers[pairs[t][1].output[0]], range_used=round(pairs[t][2] * 127, 5),
        range_calibration=round(calib_ranges[t], 5) if t in calib_ranges else None,
        range_heavy_rain=round(heavy_ranges.get(t, float("nan")), 5),
        sqnr_light_db=round(sqnr_light[t], 2), sqnr_heavy_db=round(sqnr_heavy[t], 2),
        loss_alone_db=round(losses[t] - losses["weights only"], 4)) for t in tensors]
    rows.sort(key=lambda row: row.loss_alone_db, reverse=True)
    baselines = {"all_activations_db": losses["all"], "weights_only_db": losses["weights only"],
                 "pairs": f"{len(evaluation)} reference pairs of {', '.join((*HEAVY, *LIGHT))} rain",
                 "input": [1, 3, height, width]}
    return rows, baselines


def write_sensitivity(rows: list[TensorSensitivity], baselines: dict, folder: str | Path, top: int = 20) -> list[Path]:
    """sensitivity.json, sensitivity.md (sorted table) and sensitivity.png (the `top` tensors)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    written = [folder / "sensitivity.json", folder / "sensitivity.md", folder / "sensitivity.png"]
    with atomic_path(written[0]) as tmp:
        tmp.write_text(json.dumps({**baselines, "tensors": [asdict(r) for r in rows]}, indent=2) + "\n")
    lines = [f"# INT8 sensitivity per activation ({baselines['pairs']}, "
             f"{baselines['input'][3]}x{baselines['input'][2]})", "",
             f"Loss against FP32 with every activation quantized: {baselines['all_activations_db']:.3f} dB; "
             f"weights only: {baselines['weights_only_db']:.3f} dB.", "",
             "| activation | read by | loss alone (dB) | SQNR light / heavy (dB) | range used | calibration alone | "
             "heavy rain |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        calib = "" if r.range_calibration is None else f"{r.range_calibration:.3g}"
        lines.append(f"| `{r.tensor}` | `{r.consumer}` | {r.loss_alone_db:+.3f} | {r.sqnr_light_db:.1f} / "
                     f"{r.sqnr_heavy_db:.1f} | {r.range_used:.3g} | {calib} | {r.range_heavy_rain:.3g} |")
    with atomic_path(written[1]) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    shown = rows[:top][::-1]
    figure, axis = plt.subplots(figsize=(8, 0.3 * len(shown) + 1.2))
    axis.barh([r.consumer for r in shown], [r.loss_alone_db for r in shown], color="#dd8452")
    axis.set_xlabel("dB lost on the reference pairs, this activation alone INT8\n(over the weights-only model)")
    axis.tick_params(axis="y", labelsize=7)
    axis.set_title("INT8 sensitivity: the activations that cost the most")
    figure.tight_layout()
    with atomic_path(written[2]) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)
    return written
