import json
from collections import Counter

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="export needs the `export` extra (onnx, onnxsim, onnxruntime, polygraphy)")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from conftest import run_derain  # noqa: E402

from derain.export.fp16 import convert_to_fp16  # noqa: E402
from derain.export.lint import lint_model, sequential_steps  # noqa: E402
from derain.export.onnx_export import INPUT_NAME, OPSET, export_onnx  # noqa: E402
from derain.export.precision import fp32_nodes, name_nodes  # noqa: E402
from derain.export.manifest import read_manifest  # noqa: E402
from derain.export.parity import check_parity  # noqa: E402
from derain.model import build_model  # noqa: E402


def _inputs(shape, count=2):
    rng = np.random.default_rng(0)
    return [rng.random(shape, dtype=np.float32) for _ in range(count)]


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("tiny")
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", 48, 64)
    return model, path


@pytest.mark.parametrize("name,size", [("tiny", (48, 64)), ("tiny", (37, 50)), ("edge", (64, 64)),
                                       ("edge", (72, 96))])
def test_export_is_static_opset17_without_topk_or_nonzero_and_matches_pytorch(tmp_path, name, size):
    torch.manual_seed(0)
    model = build_model(name)
    path = export_onnx(model, tmp_path / f"{name}.onnx", *size)
    graph = onnx.load(str(path))
    ops = Counter(node.op_type for node in graph.graph.node)
    assert graph.opset_import[0].version == OPSET
    assert not {"TopK", "NonZero", "CumSum", "Loop", "Scan"} & set(ops)
    assert ops["ScatterElements"] > 0 and ops["MatMul"] > 0  # the counting sort is there
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, *size]
    parity = check_parity(model, path, _inputs((1, 3, *size)))
    assert parity.passed, parity.summary()
    assert parity.max_abs < parity.atol


def test_export_mode_is_undone_after_export(tiny_export):
    model, _ = tiny_export
    assert model.training and {m.sort_method for m in model.nonlocal_attentions()} == {"argsort"}


def test_parity_detects_a_different_model(tiny_export):
    _, path = tiny_export
    torch.manual_seed(1)
    other = build_model("tiny")
    assert not check_parity(other, path, _inputs((1, 3, 48, 64), 1)).passed


def _topk_graph(k: int):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5000])
    values = helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, k])
    indices = helper.make_tensor_value_info("i", TensorProto.INT64, [1, k])
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="sort_pixels")
    graph = helper.make_graph([node], "topk", [x], [values, indices],
                              [helper.make_tensor("k", TensorProto.INT64, [1], [k])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_lint_flags_topk_over_3840_and_passes_small_k():
    findings = lint_model(_topk_graph(4096))
    assert [(f.level, f.rule, f.node) for f in findings] == [("error", "topk-k", "sort_pixels")]
    assert findings[0].targets == ("10.3", "10.13", "11")
    assert lint_model(_topk_graph(100)) == []


def test_lint_flags_integer_cumsum_dynamic_input_and_nonzero():
    x = helper.make_tensor_value_info("x", TensorProto.INT64, ["n", "length"])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, ["n", 8])
    z = helper.make_tensor_value_info("z", TensorProto.INT64, [2, None])
    nodes = [helper.make_node("CumSum", ["x", "axis"], ["y"], name="count"),
             helper.make_node("NonZero", ["y"], ["z"], name="where")]
    graph = helper.make_graph(nodes, "g", [x], [y, z], [helper.make_tensor("axis", TensorProto.INT64, [], [1])])
    rules = {(f.level, f.rule) for f in lint_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))}
    assert rules == {("error", "cumsum-integer"), ("error", "sequential-loop"), ("warning", "dynamic-shape"),
                     ("warning", "data-dependent-shape")}
    newest = {(f.rule, f.targets) for f in lint_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))}
    assert ("opset", ("10.3",)) in newest  # TensorRT 10.3 parses opsets 9 to 20


def _cumsum_graph(length: int):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, length, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, length, 32])
    graph = helper.make_graph([helper.make_node("CumSum", ["x", "axis"], ["y"], name="count")], "g", [x], [y],
                              [helper.make_tensor("axis", TensorProto.INT64, [], [1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_lint_counts_a_long_cumsum_as_sequential_loop_steps_before_tensorrt_10_8():
    model = _cumsum_graph(61_440)
    assert sequential_steps(model, "10.3") == {"count": 61_440}
    assert sequential_steps(model, "10.13") == {} == sequential_steps(model, "11")  # ICumulativeLayer
    loops = [f for f in lint_model(model) if f.rule == "sequential-loop"]
    assert [(f.level, f.targets) for f in loops] == [("error", ("10.3",))] and "61,440" in loops[0].message


def test_lint_command_reports_sequential_steps_and_fails_on_a_loop(tmp_path, capsys):
    from derain.cli import main

    onnx.save(_cumsum_graph(15_360), str(tmp_path / "loop.onnx"))
    assert main(["lint", str(tmp_path / "loop.onnx")]) == 1
    out = capsys.readouterr().out
    assert "sequential loop steps per inference: TensorRT 10.3 15,360, TensorRT 10.13 0, TensorRT 11 0" in out


@pytest.mark.slow
@pytest.mark.parametrize(("name", "height", "width"), [("realtime", 720, 1280), ("edge", 256, 256)])
def test_exports_have_no_loops_on_any_tensorrt(tmp_path, name, height, width):
    """realtime at the device's 720p; edge, with a NAB at every level and shifted windows, at 256x256
    (a loop or scan would be in its graph at any size; its 720p export took 25 s of CI)."""
    torch.manual_seed(0)
    model = onnx.load(str(export_onnx(build_model(name), tmp_path / f"{name}.onnx", height, width)))
    assert not {"CumSum", "Loop", "Scan", "TopK", "NonZero"} & {node.op_type for node in model.graph.node}
    assert all(sequential_steps(model, target) == {} for target in ("10.3", "10.13", "11"))
    assert [f for f in lint_model(model) if f.level == "error"] == []


def test_lint_passes_our_export(tiny_export):
    _, path = tiny_export
    assert [f for f in lint_model(onnx.load(str(path))) if f.level == "error"] == []


@pytest.mark.parametrize("fp32_normalization", [False, True])
def test_fp16_onnx_keeps_the_sort_in_fp32_and_runs(tiny_export, tmp_path, fp32_normalization):
    """The sort stays FP32; LayerNorm and Softmax take FP16 (FP32 inside) unless asked to stay FP32,
    and then no Cast pair surrounds them in the default graph."""
    _, path = tiny_export
    fp16 = convert_to_fp16(path, tmp_path / "tiny.fp16.onnx", fp32_normalization=fp32_normalization)
    model = onnx.shape_inference.infer_shapes(onnx.load(str(fp16)))
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.output]}
    reference = onnx.load(str(path))
    name_nodes(reference)
    kept = fp32_nodes(reference)
    assert kept and set(read_manifest(fp16).fp32_nodes) >= kept
    normalization = [n for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax")]
    assert normalization
    for node in model.graph.node:
        if node.name in kept:
            assert all(types.get(o, TensorProto.FLOAT) != TensorProto.FLOAT16 for o in node.output), node.name
    wanted = TensorProto.FLOAT if fp32_normalization else TensorProto.FLOAT16
    assert all(types[node.output[0]] == wanted for node in normalization)
    assert any(t == TensorProto.FLOAT16 for t in types.values())  # the rest did go to FP16
    x = _inputs((1, 3, 48, 64), 1)[0]
    out16 = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})[0]
    out32 = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})[0]
    assert out16.dtype == np.float32 and np.median(np.abs(out16 - out32)) < 1e-2


def test_full_image_reductions_stay_fp32_small_ones_do_not():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 768, 1280])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 1])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 1, 768, 1])
    nodes = [helper.make_node("ReduceMean", ["x"], ["y"], name="image_mean", axes=[2, 3]),
             helper.make_node("ReduceMean", ["x"], ["z"], name="row_mean", axes=[3])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y, z]), opset_imports=[helper.make_opsetid("", 17)])
    keep = fp32_nodes(model)
    assert "image_mean" in keep and "row_mean" not in keep  # 983,040 values per output vs 1,280


def _traffic_graph(quantized: bool):
    """x (1, 4, 8, 8) -> Transpose, Reshape (free) -> Conv (weights not counted) -> Cast, and a Slice of
    x's first row: counted by hand."""
    dtype = TensorProto.FLOAT16 if not quantized else TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", dtype, [1, 4, 8, 8])
    weight = helper.make_tensor("w", dtype, [2, 4, 1, 1], [0.5] * 8)
    if not quantized:
        nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
                 helper.make_node("Reshape", ["t", "shape"], ["r"]),
                 helper.make_node("Conv", ["x", "w"], ["c"]),
                 helper.make_node("Cast", ["c"], ["y"], to=TensorProto.FLOAT),
                 helper.make_node("Slice", ["x", "start", "end", "axis"], ["row"])]
        inits = [weight, helper.make_tensor("shape", TensorProto.INT64, [2], [64, 4]),
                 *(helper.make_tensor(name, TensorProto.INT64, [1], [value]) for name, value in (("start", 0), ("end", 1), ("axis", 2)))]
        outputs = [helper.make_tensor_value_info("r", dtype, [64, 4]), helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8]),
                   helper.make_tensor_value_info("row", dtype, [1, 4, 1, 8])]
    else:  # Q -> DQ -> Conv (INT8 weights through a DQ) -> Q -> DQ -> Relu
        scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
        wq = helper.make_tensor("wq", TensorProto.INT8, [2, 4, 1, 1], [5] * 8)
        nodes = [helper.make_node("QuantizeLinear", ["x", "s"], ["xq"]),
                 helper.make_node("DequantizeLinear", ["xq", "s"], ["xd"]),
                 helper.make_node("DequantizeLinear", ["wq", "s"], ["wd"]),
                 helper.make_node("Conv", ["xd", "wd"], ["c"]),
                 helper.make_node("QuantizeLinear", ["c", "s"], ["cq"]),
                 helper.make_node("DequantizeLinear", ["cq", "s"], ["cd"]),
                 helper.make_node("Relu", ["cd"], ["y"])]
        inits = [scale, wq]
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])]
    graph = helper.make_graph(nodes, "traffic", [x], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def test_activation_traffic_counts_a_hand_built_graph():
    from derain.export.traffic import activation_traffic

    # 256 FP16 values are 512 bytes: Transpose reads and writes them; the Conv reads them and writes
    # 128 FP16 (its weights are not activations); the Cast reads those 256 bytes and writes 512; the
    # Slice of one row of 8 reads and writes 32 values, 64 bytes each way, not the whole of x.
    traffic = activation_traffic(_traffic_graph(quantized=False))
    assert traffic.by_op == {"Transpose": 1024, "Conv": 768, "Cast": 768, "Slice": 128} and traffic.total_bytes == 2688
    assert not traffic.qdq_folded and traffic.nodes == {"Transpose": 1, "Conv": 1, "Cast": 1, "Slice": 1}
    nx, nano = traffic.milliseconds().values()
    assert nano > nx and abs(nx - 2688 / 102.4e9 * 1e3) < 1e-12
    # Q/DQ folded as TensorRT fuses them: the Conv reads the INT8 input (256 bytes) and writes its INT8
    # output (128) since only a QuantizeLinear reads it; the Relu reads 128 INT8 bytes, writes 512 FP32.
    folded = activation_traffic(_traffic_graph(quantized=True))
    assert folded.by_op == {"Relu": 640, "Conv": 384} and folded.qdq_folded


def test_the_bundled_fp16_graph_moves_a_quarter_of_the_720p_bound_at_a_quarter_of_the_pixels(tmp_path):
    """640x360 runs on a 640x384 canvas, 720p on 1280x736 (and its bottleneck on 96 of 92 rows): 3.8
    to 4 times the per-pixel tensors, so the 2.5 GB bound of a 720p FP16 frame is about 0.625 GB
    here (the bundled graph moves 0.61 GB here, 2.39 GB at 720p: benchmarks/traffic.py). A rewrite
    undone (or a new copy of a feature map) shows up as more."""
    from derain.export.traffic import onnx_traffic
    from derain.model import load_checkpoint

    model, _ = load_checkpoint(None)
    fp32 = export_onnx(model, tmp_path / "realtime.onnx", 360, 640)
    traffic = onnx_traffic(convert_to_fp16(fp32, tmp_path / "realtime.fp16.onnx"))
    assert traffic.gb <= 2.5 / 4, traffic.summary()
    assert onnx_traffic(fp32).gb > 1.8 * traffic.gb  # and FP16 halves what FP32 moves, or nearly


def test_info_prints_the_traffic_and_flops_of_an_onnx(tiny_export, tmp_path):
    _, path = tiny_export
    result = run_derain("info", "--onnx", path, "--json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["gflops"] > 0 and row["traffic"]["gb"] > 0 and row["precision"] == "fp32"
    assert set(row["traffic"]["ms_at_full_bandwidth"]) == {"Orin NX 16GB", "Orin Nano 8GB"}
    text = run_derain("info", "--onnx", path).stdout
    assert "GFLOPs" in text and "activation traffic" in text and "Orin Nano" in text
    (tmp_path / "bad.onnx").write_text("not a model")
    bad = run_derain("info", "--onnx", tmp_path / "bad.onnx")
    assert bad.returncode == 1 and bad.stderr.strip() == f"derain: error: {tmp_path / 'bad.onnx'}: not an ONNX model (DecodeError)"


def test_fp16_keeps_the_mask_statistics_and_their_constants_fp32(tmp_path):
    from derain.export.traffic import tensor_bytes

    """At 256x256 the rain mask's unbiased variance multiplies by n = 65536 and divides by n - 1, both
    past FP16's 65504: the statistics stay FP32, constants included, and nothing in the FP16 graph is
    clamped (the lint checks for it)."""
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    model.rain_mask.threshold_std.fill_(1.0)  # with 0 (the default) the variance is not computed at all
    path = export_onnx(model, tmp_path / "tiny256.onnx", 256, 256)
    fp16 = onnx.load(str(convert_to_fp16(path, tmp_path / "tiny256.fp16.onnx")))
    assert not [f for f in lint_model(fp16) if f.rule == "fp16-clamped-constant"]
    reference = onnx.load(str(path))
    name_nodes(reference)
    sizes = tensor_bytes(reference)
    # the Mul and Div on the mask's full-image mean and variance: one value per image each
    statistics = {n.name for n in reference.graph.node if n.name.startswith("/rain_mask/")
                  and n.op_type in ("Mul", "Div") and sizes[n.output[0]] == 4}
    assert len(statistics) >= 2 and statistics <= fp32_nodes(reference)
    # Min and Max are exact in FP16: the mask's Min runs there, with no Cast around it
    producer = {output: node for node in fp16.graph.node for output in node.output}
    minimum = next(node for node in fp16.graph.node if node.op_type == "Min")
    assert all(producer[name].op_type != "Cast" for name in minimum.input)


def test_lint_flags_an_fp16_constant_clamped_to_65504():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1])
    big = onnx.numpy_helper.from_array(np.array([65504], np.float16), "n")
    model = helper.make_model(helper.make_graph([helper.make_node("Mul", ["x", "n"], ["y"])], "g", [x], [y], [big]),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    assert [(f.rule, f.node) for f in lint_model(model) if f.rule == "fp16-clamped-constant"] == [("fp16-clamped-constant", "n")]
