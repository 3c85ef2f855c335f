"""Throughput of a Triton server as cameras are added: 1, 2 and 4 concurrent gRPC clients, each
sending one frame per request (as `derain stream --backend triton` does), against a local
tritonserver (nvidia-pytriton's, CPU, Python-backend repository from `derain triton
--python-backend`) serving the bundled model. Frames per second summed over the clients, medians
of --repeats interleaved runs, ratios to one client in the same run; the server's batch sizes from
its statistics show what the dynamic batcher merged.

    python benchmarks/triton_clients.py --height 144 --width 256 --frames 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from derain.atomic import atomic_path
from derain.export.onnx_export import export_onnx
from derain.model import load_checkpoint
from derain.triton.local_server import LocalTritonServer
from derain.triton.repository import FRAMES_IN, FRAMES_OUT, TritonOptions, write_repository

RESULTS = Path(__file__).parent / "results" / "triton_clients.json"


def send(address: str, frames: np.ndarray) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(address)
    for frame in frames:
        request = grpcclient.InferInput(FRAMES_IN, [1, *frame.shape], "UINT8")
        request.set_data_from_numpy(frame[None])
        client.infer("derain", [request]).as_numpy(FRAMES_OUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=144)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--frames", type=int, default=16, help="frames per client")
    parser.add_argument("--clients", default="1,2,4")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queue-delay-us", type=int, default=5000)
    args = parser.parse_args()
    counts = [int(n) for n in args.clients.split(",")]
    model, _ = load_checkpoint(None)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (max(counts), args.frames, args.height, args.width, 3), dtype=np.uint8)
    runs: dict[int, list[float]] = {count: [] for count in counts}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        onnx = export_onnx(model, work / "model.onnx", args.height, args.width, max(counts), dynamic_batch=True)
        repository = write_repository(onnx, work / "repo", TritonOptions(kind="cpu", python_backend=True,
                                                                         queue_delay_us=args.queue_delay_us))
        with LocalTritonServer(repository, work) as server:
            address = f"127.0.0.1:{server.grpc_port}"
            send(address, frames[0, :2])  # warm-up
            for _ in range(args.repeats):  # interleaved, so drifting load hits every count alike
                for count in counts:
                    started = time.perf_counter()
                    with ThreadPoolExecutor(count) as pool:
                        list(pool.map(lambda i: send(address, frames[i]), range(count)))
                    runs[count].append(count * args.frames / (time.perf_counter() - started))
            import tritonclient.grpc as grpcclient

            stats = grpcclient.InferenceServerClient(address).get_inference_statistics("derain", as_json=True)
    batches = {int(row["batch_size"]): int(row["compute_infer"]["count"])
               for row in stats["model_stats"][0]["batch_stats"]}
    one = statistics.median(runs[counts[0]])
    rows = [{"clients": count, "fps": round(statistics.median(runs[count]), 2),
             "ratio_to_one_client": round(statistics.median(runs[count]) / one, 3), "runs": runs[count]}
            for count in counts]
    for row in rows:
        print(json.dumps(row))
    result = {
        "command": f"python benchmarks/triton_clients.py --height {args.height} --width {args.width} "
                   f"--frames {args.frames} --clients {args.clients} --repeats {args.repeats} "
                   f"--queue-delay-us {args.queue_delay_us}",
        "server": "nvidia-pytriton 0.7.0 tritonserver 2.51, CPU, Python backend running derain's ONNX Runtime "
                  "backend, one instance", "model": model.config.name, "frame": f"{args.width}x{args.height}",
        "executions_by_batch_size": batches,
        "note": "frames/s summed over clients on 127.0.0.1; this machine is shared and has 2 cores: read the "
                "ratios, not the absolute numbers",
        "rows": rows}
    with atomic_path(RESULTS) as tmp:  # a stopped run leaves the last results whole
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
