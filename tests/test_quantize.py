import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="needs the `onnx` extra (onnx, onnxsim, onnxruntime, polygraphy)")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto  # noqa: E402

from conftest import run_derain  # noqa: E402
from derain.calib.frames import load_calibration, sample_frames, spread_indices  # noqa: E402
from derain.calib.quantize import QUANTIZED_OPS, quantize_onnx  # noqa: E402
from derain.data.pairs import load_pairs  # noqa: E402
from derain.errors import DerainError  # noqa: E402
from derain.export.fp16 import convert_to_fp16  # noqa: E402
from derain.export.manifest import read_manifest  # noqa: E402
from derain.export.lint import lint_model  # noqa: E402
from derain.export.onnx_export import INPUT_NAME, OPSET, export_onnx  # noqa: E402
from derain.export.precision import fp32_nodes, name_nodes  # noqa: E402
from derain.model import build_model  # noqa: E402
from derain.validate.report import validate  # noqa: E402


def _write_counting_video(path: Path, frames: int = 30) -> None:
    """Frame i is flat grey of level 8*i, so a calibration frame tells which frame it came from."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (100, 80))
    for i in range(frames):
        writer.write(np.full((80, 100, 3), 8 * i, np.uint8))
    writer.release()


def test_spread_indices_cover_the_whole_source():
    assert spread_indices(30, 5) == [0, 7, 14, 22, 29]
    assert spread_indices(3, 10) == [0, 1, 2]


def test_calib_command_spreads_frames_over_a_video(tmp_path):
    _write_counting_video(tmp_path / "clip.avi")
    result = run_derain("calib", "--source", tmp_path / "clip.avi", "--num", 5, "--height", 48, "--width", 64,
                        "-o", tmp_path / "calib.npz")
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "calib.npz") as data:
        assert list(data) == [INPUT_NAME]
        frames = data[INPUT_NAME]
    assert frames.shape == (5, 3, 48, 64) and frames.dtype == np.float32
    levels = np.round(frames.mean(axis=(1, 2, 3)) * 255 / 8)
    assert levels.tolist() == [0, 7, 14, 22, 29]


def test_calib_from_small_images_pads_and_bad_sources_fail(tmp_path):
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "imgs" / f"{i}.png"), np.full((20, 30, 3), 50 * i, np.uint8))
    frames = sample_frames(tmp_path / "imgs", 10, 48, 64)
    assert frames.shape == (3, 3, 48, 64)
    result = run_derain("calib", "--source", tmp_path / "nothing", "--height", 8, "--width", 8, "-o", tmp_path / "c.npz")
    assert result.returncode == 1 and "nothing: no such file or folder" in result.stderr
    assert not (tmp_path / "c.npz").exists()


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models")
    fp32 = export_onnx(build_model("tiny"), folder / "tiny.onnx", 48, 64)
    calib = sample_frames(Path(__file__).parent.parent / "examples", 4, 48, 64)
    return {"fp32": fp32, "fp16": convert_to_fp16(fp32, folder / "tiny.fp16.onnx"),
            "int8": quantize_onnx(fp32, calib, folder / "tiny.int8.onnx")}


def test_int8_model_has_symmetric_qdq_that_runs_and_spares_the_sort(tiny_models):
    model = onnx.load(str(tiny_models["int8"]))
    ops = Counter(node.op_type for node in model.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    assert [f for f in lint_model(model) if f.level == "error"] == []  # zero points are 0
    producers = {o: n for n in model.graph.node for o in n.output}
    reference = onnx.load(str(tiny_models["fp32"]))
    name_nodes(reference)
    kept = fp32_nodes(reference)
    for node in model.graph.node:
        if node.name in kept:
            assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in node.input)
    weights = {init.name: init for init in model.graph.initializer}

    def image_facing(node) -> bool:  # 3 channels in or out, wherever the rewrites put it
        weight = producers[node.input[1]].input[0] if node.input[1] in producers else node.input[1]
        return 3 in weights[weight].dims[:2]

    convs = [node for node in model.graph.node if node.op_type in ("Conv", "ConvTranspose")]
    assert {"Conv", "ConvTranspose"} <= {node.op_type for node in convs}  # the decoder upsamples by ConvTranspose
    reads_int8 = {node.name: producers.get(node.input[0]) is not None
                  and producers[node.input[0]].op_type == "DequantizeLinear" for node in convs}
    facing = {node.name for node in convs if image_facing(node)}
    assert len(facing) >= 2 and not any(reads_int8[name] for name in facing)  # the image-facing convs read float
    assert all(reads_int8[node.name] for node in convs if node.name not in facing)  # every other one INT8
    x = np.random.default_rng(0).random((1, 3, 48, 64), dtype=np.float32)
    int8 = ort.InferenceSession(str(tiny_models["int8"]), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})
    fp32 = ort.InferenceSession(str(tiny_models["fp32"]), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})
    assert np.median(np.abs(int8[0] - fp32[0])) < 0.05


def test_validate_fails_below_the_measured_loss_and_passes_above(tiny_models, tmp_path):
    report, _ = validate(tiny_models, load_pairs("synthetic"), max_loss_db=10.0, data="synthetic")  # as the CLI
    worst_loss = max(report.precisions[p]["loss_db"] for p in ("fp16", "int8"))
    assert worst_loss > 0  # INT8 loses something: a threshold below it exists (thresholds are 0 or more)
    for threshold, code in ((worst_loss / 2, 1), (worst_loss + 0.01, 0)):
        result = run_derain("validate", "--data", "synthetic", "--onnx", tiny_models["fp32"], "--fp16",
                            tiny_models["fp16"], "--int8", tiny_models["int8"], "--max-loss-db", threshold,
                            "-o", tmp_path / f"report{code}")
        assert result.returncode == code, result.stderr
        written = json.loads((tmp_path / f"report{code}" / "report.json").read_text())
        assert written["passed"] == (code == 0) and written["images"] == 9
        assert {"max_abs", "median_abs"} <= set(written["precisions"]["int8"]["vs_fp32"])
        assert cv2.imread(str(tmp_path / f"report{code}" / "psnr.png")) is not None
        assert cv2.imread(str(tmp_path / f"report{code}" / "worst.png")).shape == (48, 4 * 64, 3)


def test_quantize_rejects_a_bad_calibration_file(tiny_models, tmp_path):
    np.savez(tmp_path / "wrong.npz", images=np.zeros((2, 3, 4, 4), np.float32))
    result = run_derain("quantize", tiny_models["fp32"], "--calib", tmp_path / "wrong.npz", "-o", tmp_path / "q.onnx")
    assert result.returncode == 1 and "wrong.npz" in result.stderr and not (tmp_path / "q.onnx").exists()
    with pytest.raises(Exception, match="float32"):
        np.savez(tmp_path / "ints.npz", rainy=np.zeros((2, 3, 4, 4), np.uint8))
        load_calibration(tmp_path / "ints.npz")


def test_export_and_lint_commands(tmp_path, tiny_checkpoint):
    result = run_derain("export", "--checkpoint", tiny_checkpoint, "--height", 32, "--width", 48, "--fp16", "--lint",
                        "-o", tmp_path / "m.onnx")
    assert result.returncode == 0, result.stderr
    assert "PASS: ONNX Runtime vs PyTorch" in result.stdout and "0 errors" in result.stdout
    assert (tmp_path / "m.onnx").is_file() and (tmp_path / "m.fp16.onnx").is_file()
    from onnx import TensorProto, helper

    topk = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="big_sort")
    graph = helper.make_graph([topk], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5000])],
                              [helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 4096])],
                              [helper.make_tensor("k", TensorProto.INT64, [1], [4096])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "bad.onnx"))
    result = run_derain("lint", tmp_path / "bad.onnx")
    assert result.returncode == 1 and "topk-k" in result.stdout and "big_sort" in result.stdout
    result = run_derain("lint", tmp_path / "m.onnx", "--targets", "10.3,9.0")
    assert result.returncode == 1 and "unknown TensorRT version 9.0" in result.stderr


def test_one_precision_policy_for_fp16_int8_and_the_tensorrt_builder(tiny_models):
    """FP16 conversion and INT8 quantizer keep the very same nodes in float."""

    reference = onnx.load(str(tiny_models["fp32"]))
    name_nodes(reference)
    policy = fp32_nodes(reference)
    kept_ops = {n.op_type for n in reference.graph.node if n.name in policy}
    assert {"ArgMax", "MatMul", "ScatterElements"} <= kept_ops
    assert not {"LayerNormalization", "Softmax"} & kept_ops  # FP16 in and out, FP32 inside
    assert set(read_manifest(tiny_models["fp32"]).fp32_nodes) == policy  # what the converters read
    fp16 = onnx.shape_inference.infer_shapes(onnx.load(str(tiny_models["fp16"])))
    types = {v.name: v.type.tensor_type.elem_type for v in fp16.graph.value_info}
    float_outputs = {n.name for n in fp16.graph.node if n.name in policy for o in n.output
                     if types.get(o) in (TensorProto.FLOAT, TensorProto.FLOAT16)}
    in_fp16 = {n.name for n in fp16.graph.node for o in n.output if types.get(o) == TensorProto.FLOAT16}
    assert float_outputs and not float_outputs & in_fp16  # FP16 conversion: none of them in FP16
    int8 = onnx.load(str(tiny_models["int8"]))
    dequantized = {o for n in int8.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    quantized = {n.name for n in int8.graph.node if any(i in dequantized for i in n.input)}
    assert quantized and not quantized & policy  # the quantizer: none of them reads INT8


def test_int8_onnx_is_fp16_outside_the_policy_and_keeps_the_sort_fp32(tiny_models):
    """Strongly typed INT8: the graph carries every precision. Its float part is FP16 (opset 19 Q/DQ
    take FP16 scales), but no tensor of the NAB sort, the position maps or a normalization is FP16."""
    reference = onnx.load(str(tiny_models["fp32"]))
    name_nodes(reference)
    policy = fp32_nodes(reference)
    int8 = onnx.shape_inference.infer_shapes(onnx.load(str(tiny_models["int8"])))
    assert int8.opset_import[0].version >= 19
    types = {v.name: v.type.tensor_type.elem_type for v in [*int8.graph.value_info, *int8.graph.input]}
    types |= {i.name: i.data_type for i in int8.graph.initializer}
    kept = [n for n in int8.graph.node if n.name in policy]
    assert len(kept) == len(policy)  # every policy node is still there, by name
    assert all(types.get(t) != TensorProto.FLOAT16 for n in kept for t in [*n.input, *n.output] if t)
    scales = [types[n.input[1]] for n in int8.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert scales and set(scales) == {TensorProto.FLOAT16}
    convs = [n for n in int8.graph.node if n.op_type == "Conv"]
    assert all(types[n.output[0]] == TensorProto.FLOAT16 for n in convs)


def test_no_qdq_on_conv_outputs_and_a_residual_add_quantized_on_one_branch(tmp_path):
    torch.manual_seed(0)
    fp32 = export_onnx(build_model("realtime"), tmp_path / "realtime.onnx", 64, 64)  # has residual conv blocks
    calib = sample_frames(Path(__file__).parent.parent / "examples", 4, 64, 64)
    int8 = onnx.load(str(quantize_onnx(fp32, calib, tmp_path / "realtime.int8.onnx")))
    producer = {o: n for n in int8.graph.node for o in n.output}

    def source(name: str) -> str:  # the op behind the Casts that the FP16 conversion may put between
        node = producer.get(name)
        while node is not None and node.op_type == "Cast":
            node = producer.get(node.input[0])
        return node.op_type if node is not None else "input"

    consumers: dict[str, list[str]] = {}
    for node in int8.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    for node in int8.graph.node:  # a Q on a weighted op's output only as the input quantization of a Conv
        if node.op_type == "QuantizeLinear" and source(node.input[0]) in QUANTIZED_OPS:
            assert "Conv" in consumers[_dequantized(int8, node)]
    residual = [sorted(source(i) for i in n.input) for n in int8.graph.node
                if n.op_type == "Add" and "Conv" in {source(i) for i in n.input}
                and "DequantizeLinear" in {source(i) for i in n.input}]
    assert residual == [["Conv", "DequantizeLinear"]] * len(residual) and residual
    # the convs that write the image (the composed 5x5 of the image, the transposed conv from half
    # resolution, the border strips' heads) read float
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in onnx.shape_inference.infer_shapes(int8).graph.value_info}
    to_image = [n for n in int8.graph.node if n.op_type in ("Conv", "ConvTranspose") and shapes[n.output[0]][1] == 3]
    assert {n.op_type for n in to_image} == {"Conv", "ConvTranspose"}
    assert all(source(n.input[0]) != "DequantizeLinear" for n in to_image)


def _dequantized(model, quantize) -> str:  # noqa: ANN001
    """The output of the DequantizeLinear that reads `quantize`."""
    return next(n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"
                and n.input[0] == quantize.output[0])


def test_backend_runner_puts_a_shipped_backend_into_polygraphy_comparisons(tiny_models):
    """The runner `validate --engine` and the TensorRT tests wrap TensorRTBackend in, exercised with
    the ONNX Runtime backend: it must give exactly what Polygraphy's own ONNX Runtime runner gives."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator

    from derain.export.comparison import quiet_polygraphy, simple_compare
    from derain.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from derain.validate.report import backend_runner

    feeds = [{INPUT_NAME: np.random.default_rng(i).random((1, 3, 48, 64), dtype=np.float32)} for i in range(2)]
    with quiet_polygraphy():
        results = Comparator.run([OnnxrtRunner(SessionFromOnnx(str(tiny_models["fp32"]))),
                                  backend_runner(lambda: OnnxRuntimeBackend(tiny_models["fp32"]), "derain-ort")],
                                 data_loader=feeds)
        accuracy = Comparator.compare_accuracy(results, compare_func=simple_compare(atol=1e-6, rtol=1e-6))
    assert accuracy and len(results[1][1]) == 2


def test_every_onnx_gets_a_manifest_that_later_stages_read(tiny_models):
    from derain.engines.build import graph_precision

    fp32, fp16, int8 = (read_manifest(tiny_models[p]) for p in ("fp32", "fp16", "int8"))
    assert fp32.precision == "fp32" and fp32.input["shape"] == [1, 3, 48, 64] and fp32.opset == OPSET
    assert fp32.config == "tiny" and fp32.fp32_nodes
    assert (fp16.precision, fp16.source) == ("fp16", str(tiny_models["fp32"])) and fp16.fp32_nodes == fp32.fp32_nodes
    assert int8.precision == "int8" and len(int8.extra["calibration_sha256"]) == 64
    assert int8.opset == max(OPSET, 19) and int8.fp32_nodes == fp32.fp32_nodes
    # The builder takes the precision from the manifest, and from the graph without one.
    assert graph_precision(tiny_models["int8"]) == (int8.input, "int8")
    for name in ("fp32", "fp16", "int8"):
        bare = tiny_models[name].with_name(f"bare-{name}.onnx")
        bare.write_bytes(tiny_models[name].read_bytes())  # no manifest beside it
        assert graph_precision(bare)[1] == name


def test_quantize_and_stream_refuse_bad_models_in_one_line(tiny_models, tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is no protobuf")
    np.savez(tmp_path / "calib.npz", rainy=np.zeros((2, 3, 48, 64), np.float32))
    np.savez(tmp_path / "small.npz", rainy=np.zeros((2, 3, 16, 16), np.float32))
    cases = [(["quantize", garbage, "--calib", tmp_path / "calib.npz", "-o", tmp_path / "q.onnx"], "not an ONNX model"),
             (["quantize", tiny_models["fp32"], "--calib", tmp_path / "small.npz", "-o", tmp_path / "q.onnx"],
              "takes frames of 3x48x64")]
    dynamic = tmp_path / "dynamic.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 3, 3, padding=1), (torch.rand(1, 3, 16, 16),), str(dynamic),
                      input_names=[INPUT_NAME], dynamic_axes={INPUT_NAME: {2: "h", 3: "w"}}, dynamo=False)
    cases.append((["stream", "--source", tmp_path, "--sink", "null", "--onnx", dynamic], "dynamic input shape"))
    for args, message in cases:
        result = run_derain(*args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "q.onnx").exists()
    result = run_derain("quantize", tiny_models["fp32"], "--calib", tmp_path / "calib.npz", "-o", tmp_path / "q.onnx")
    assert result.returncode == 0 and "WARNING" not in result.stderr  # ONNX Runtime's pre-processing advice
    assert len(result.stdout.strip().splitlines()) == 1, result.stdout  # nor its calibrators' progress prints


class _StandInTensorRT:
    """What build_engine asks of TensorRT and Polygraphy, recorded: TensorRT cannot run here."""

    __version__ = "10.3.0"

    class MemoryPoolType:
        WORKSPACE = "workspace"

    def __init__(self) -> None:
        self.networks: list[tuple[str, dict]] = []
        self.configs: list[dict] = []


@pytest.mark.parametrize("major", ["10.3.0", "11.1.0"])
def test_builds_are_strongly_typed_from_the_graph_on_tensorrt_10_and_11(tiny_models, tmp_path, monkeypatch, major):
    import sys

    import polygraphy.backend.trt as polygraphy_trt

    from derain.engines import build
    from derain.engines.device import DeviceInfo
    from derain.engines.store import read_manifest as read_engine_manifest

    stand_in = _StandInTensorRT()
    stand_in.__version__ = major
    monkeypatch.setitem(sys.modules, "tensorrt", stand_in)
    monkeypatch.setattr(build, "current_device", lambda: DeviceInfo("Orin", "8.7", major, 8, 15))
    monkeypatch.setattr(polygraphy_trt, "network_from_onnx_path",
                        lambda path, **kwargs: stand_in.networks.append((path, kwargs)) or "network")
    monkeypatch.setattr(polygraphy_trt, "CreateConfig", lambda **kwargs: stand_in.configs.append(kwargs) or "config")
    monkeypatch.setattr(polygraphy_trt, "engine_bytes_from_network", lambda network, config, save_timing_cache: b"plan")
    built = {}
    for name, precision in [("fp32", "fp32"), ("fp16", "fp16"), ("int8", "int8"), ("fp32", "fp16")]:
        options = build.BuildOptions(precision=precision, store=tmp_path / "engines", name=f"{name}-as-{precision}")
        built[name, precision] = build.build_engine(tiny_models[name], options)
    assert all(kwargs == {"strongly_typed": True} for _, kwargs in stand_in.networks)
    assert all(set(config) == {"profiles", "tf32", "load_timing_cache", "memory_pool_limits", "builder_optimization_level"}
               and config["tf32"] is False for config in stand_in.configs)  # no FP16 / INT8 / constraint flags
    assert all(config["profiles"] is None for config in stand_in.configs)  # static inputs: Polygraphy's default
    converted = Path(stand_in.networks[-1][0])  # FP16 from the FP32 ONNX: converted first, kept in the store
    assert converted.parent == built["fp32", "fp16"].parent and read_manifest(converted).precision == "fp16"
    assert [Path(path) for path, _ in stand_in.networks[:3]] == [tiny_models[n] for n in ("fp32", "fp16", "int8")]
    manifest = read_engine_manifest(built["int8", "int8"])
    assert manifest.build["strongly_typed"] and manifest.build["trtexec"].endswith("--stronglyTyped --noTF32")
    with pytest.raises(DerainError, match="quantize it first"):
        build.build_engine(tiny_models["fp16"], build.BuildOptions(precision="int8", store=tmp_path / "engines"))
    dynamic = export_onnx(build_model("tiny"), tmp_path / "dynamic.onnx", 48, 64, 4, dynamic_batch=True)
    engine = build.build_engine(dynamic, build.BuildOptions(precision="fp32", store=tmp_path / "engines"))
    (profile,) = stand_in.configs[-1]["profiles"]  # Polygraphy's Profile: min 1 / opt 4 / max 4
    assert [tuple(profile["rainy"].min), tuple(profile["rainy"].opt), tuple(profile["rainy"].max)] == \
        [(1, 3, 48, 64), (4, 3, 48, 64), (4, 3, 48, 64)]
    assert read_engine_manifest(engine).input["batch"] == [1, 4]


def _qdq_scales(path: Path) -> dict[str, float]:
    """Activation tensor -> its QuantizeLinear scale."""
    model = onnx.load(str(path))
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    return {node.input[0]: float(constants[node.input[1]]) for node in model.graph.node
            if node.op_type == "QuantizeLinear" and node.input[1] in constants and constants[node.input[1]].size == 1}


@pytest.fixture(scope="module")
def ranged_models(tmp_path_factory):
    """A tiny model quantized with the default ranges, with dark frames widening them (they cannot
    narrow), with dark frames alone (narrowed on purpose), and with bright noise widening them."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ranged")
    fp32 = export_onnx(build_model("tiny"), folder / "tiny.onnx", 48, 64)
    rng = np.random.default_rng(0)
    dark = (rng.random((3, 3, 48, 64)) * 0.02).astype(np.float32)
    bright = rng.random((3, 3, 48, 64)).astype(np.float32) * 8  # far outside any image: wider ranges
    return {"fp32": fp32, "default": quantize_onnx(fp32, None, folder / "default.onnx"),
            "dark widening": quantize_onnx(fp32, dark, folder / "dark.onnx"),
            "dark alone": quantize_onnx(fp32, dark, folder / "dark-alone.onnx", reference=False),
            "bright widening": quantize_onnx(fp32, bright, folder / "bright.onnx")}


def test_user_frames_widen_the_reference_ranges_and_never_narrow_them(ranged_models):
    default = _qdq_scales(ranged_models["default"])
    assert len(default) > 5
    dark = _qdq_scales(ranged_models["dark widening"])
    assert dark.keys() == default.keys() and all(dark[n] >= default[n] for n in default)  # dark content narrows none
    alone = _qdq_scales(ranged_models["dark alone"])
    narrowed = [name for name in default if alone[name] < default[name] * 0.99]  # dark frames alone: narrower
    assert len(narrowed) > len(default) * 0.75
    bright = _qdq_scales(ranged_models["bright widening"])
    assert all(bright[name] >= default[name] for name in default) and any(bright[n] > default[n] for n in default)
    manifest = read_manifest(ranged_models["dark widening"])
    assert "reference rain (12 frames)" in manifest.extra["ranges"] and manifest.extra["calibration_frames"] == 3


def test_reference_pairs_ship_with_the_package_from_train_splits_only():
    from derain.calib.ranges import reference_groups

    groups = reference_groups()
    assert set(groups) == {"heavy", "heavy-dense", "light", "real"}
    files = [f for folder in groups.values() for f in folder.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) < 4 * 2**20
    for folder in groups.values():
        pairs = load_pairs(folder)
        assert pairs and all(rainy.shape == clean.shape == (256, 256, 3) for rainy, clean in pairs)


def test_reference_pairs_are_the_train_crops_the_script_cuts(tmp_path):
    from conftest import shared_data
    from derain.calib.ranges import REFERENCE

    data = shared_data()
    script = Path(__file__).parent.parent / "scripts" / "make_reference_pairs.py"
    result = subprocess.run([sys.executable, str(script), "--data", str(data), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.png"))
    assert made == sorted(p.relative_to(REFERENCE) for p in REFERENCE.rglob("*.png"))
    for relative in made:
        assert np.array_equal(cv2.imread(str(tmp_path / relative)), cv2.imread(str(REFERENCE / relative)))
    for rain in tmp_path.rglob("rain/*.png"):  # every crop comes from a train split
        assert rain.name in {p.name for p in data.glob("*/train/rain/*")}


def test_quantize_needs_no_calibration_and_calib_only_needs_one(ranged_models, tmp_path):
    result = run_derain("quantize", ranged_models["fp32"], "-o", tmp_path / "q.onnx")
    assert result.returncode == 0, result.stderr
    assert _qdq_scales(tmp_path / "q.onnx") == _qdq_scales(ranged_models["default"])
    result = run_derain("quantize", ranged_models["fp32"], "--calib-only", "-o", tmp_path / "r.onnx")
    assert result.returncode == 1 and "--calib-only needs --calib" in result.stderr
    assert not (tmp_path / "r.onnx").exists()


def test_deploy_refuses_an_int8_model_that_fails_the_reference_check_before_tensorrt(tmp_path):
    """The bundled checkpoint with ranges narrowed on purpose (dark frames alone) clips heavy rain's
    streaks: the check names the group and the loss, exits 1, and leaves the engine store empty,
    with or without TensorRT."""
    (tmp_path / "dark").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(tmp_path / "dark" / f"{i}.png"), (rng.random((48, 64, 3)) * 4).astype(np.uint8))
    common = ["deploy", "--height", 48, "--width", 64, "--precision", "int8",
              "--onnx-dir", tmp_path / "onnx", "--store", tmp_path / "engines"]
    result = run_derain(*common, "--calib", tmp_path / "dark", "--calib-only")
    errors = [line for line in result.stderr.splitlines() if line.startswith("derain: error:")]
    assert result.returncode == 1 and len(errors) == 1 and "Traceback" not in result.stderr
    match = re.search(r"INT8 loses ([\d.]+) dB against FP32 on the reference pairs of ([\w-]+) rain \(bound 0.3 dB\)",
                      errors[0])
    assert match and float(match.group(1)) > 0.3 and match.group(2) in {"heavy", "heavy-dense", "light", "real"}
    assert "--force" in errors[0] and not (tmp_path / "engines").exists()
    record = read_manifest(tmp_path / "onnx" / "realtime-64x48.int8.onnx").extra  # the model says how it was made
    assert record["ranges"] == "calibration (3 frames) alone" and not record["reference_check"]["passed"]
    assert max(record["reference_check"]["loss_db"].values()) == pytest.approx(float(match.group(1)), abs=0.01)
    # Told to go on, it goes on to the build: here the line is about TensorRT, not the check.
    result = run_derain(*common, "--calib", tmp_path / "dark", "--calib-only", "--force")
    assert result.returncode == 1 and "building it anyway (--force)" in result.stdout
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert "TensorRT is not installed" in result.stderr


def test_sensitivity_bypasses_qdq_pairs_exactly_and_ranks_every_activation(ranged_models, tmp_path):
    from derain.validate.sensitivity import _activation_qdq, _keep_only

    model = onnx.load(str(ranged_models["dark alone"]))
    pairs = _activation_qdq(model)
    x = np.random.default_rng(1).random((1, 3, 48, 64), dtype=np.float32)

    def run(proto) -> np.ndarray:
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {INPUT_NAME: x})[0]

    assert np.array_equal(run(_keep_only(model, pairs, set(pairs))), run(model))  # keeping all changes nothing
    weights_only = _keep_only(model, pairs, set())
    assert not _activation_qdq(weights_only) and not np.array_equal(run(weights_only), run(model))
    assert len(_activation_qdq(_keep_only(model, pairs, {next(iter(pairs))}))) == 1

    np.savez(tmp_path / "dark.npz", rainy=(np.random.default_rng(0).random((2, 3, 48, 64)) * 0.02).astype(np.float32))
    result = run_derain("quantize", ranged_models["fp32"], "--calib", tmp_path / "dark.npz", "--calib-only",
                        "-o", tmp_path / "q.onnx", "--sensitivity", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    assert re.search(r"\d+\.\d% of the multiply-accumulates in INT8", result.stdout)
    report = json.loads((tmp_path / "report" / "sensitivity.json").read_text())
    rows = report["tensors"]
    assert {row["tensor"] for row in rows} == set(_activation_qdq(onnx.load(str(tmp_path / "q.onnx"))))
    losses = [row["loss_alone_db"] for row in rows]
    assert losses == sorted(losses, reverse=True) and all(np.isfinite(losses))
    assert all(row["range_calibration"] is not None and row["range_heavy_rain"] > 0 for row in rows)
    assert cv2.imread(str(tmp_path / "report" / "sensitivity.png")) is not None
    assert "| activation | read by | loss alone (dB)" in (tmp_path / "report" / "sensitivity.md").read_text()


def test_int8_mac_share_counts_the_quantized_convolutions(ranged_models, tmp_path):
    from derain.calib.quantize import int8_mac_share

    share = int8_mac_share(ranged_models["default"])
    assert 0.3 < share < 1  # the image-facing convs and the attention's activation MatMuls stay float
    no_convs = quantize_onnx(ranged_models["fp32"], None, tmp_path / "q.onnx", float_image_convs=False)
    assert int8_mac_share(no_convs) > share  # quantizing the image-facing convs too adds their MACs
    assert int8_mac_share(ranged_models["fp32"]) == 0
