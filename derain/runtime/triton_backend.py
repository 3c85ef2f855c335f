"""Triton backend: frames go to a Triton Inference Server (a `derain triton` repository) over
gRPC, so a camera box without a GPU of its own offloads to a server. uint8 BGR frames travel, as
cameras produce them; the server batches requests from many clients (dynamic batching).

A server that cannot be reached raises BackendUnavailable (one line for `derain run`; a stream
drops those frames, counts them and retries with backoff). gRPC reconnects by itself on the next
call. Needs tritonclient[grpc] (the `serve` extra)."""

from __future__ import annotations

import numpy as np

from ..data.io import from_pixels, to_pixels
from ..errors import DerainError
from .backend import Backend, BackendUnavailable

DEFAULT_PORT = 8001  # Triton's gRPC port
UNREACHABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED")  # gRPC status codes of a server that is away
# A model that answered at start and then is NOT_FOUND is being unloaded: its server shuts down.
GONE = (*UNREACHABLE, "NOT_FOUND")


def grpc_address(url: str) -> str:
    """grpc://host:port (or host:port) -> host:port."""
    address = url[len("grpc://"):] if url.startswith("grpc://") else url
    if "://" in address or not address:
        raise DerainError(f"--url {url}: expected grpc://host:port")
    return address if ":" in address else f"{address}:{DEFAULT_PORT}"


class TritonBackend(Backend):
    name = "triton"
    dynamic_batch = True  # requests of 1..max_batch_size frames

    def __init__(self, url: str, model: str = "derain", timeout_s: float = 30.0) -> None:
        try:
            import tritonclient.grpc as grpcclient
            from tritonclient.utils import InferenceServerException
        except ImportError as error:
            raise DerainError("--backend triton needs tritonclient: pip install 'derain[serve]'") from error
        self.grpc, self.error_type = grpcclient, InferenceServerException
        self.url, self.model, self.timeout_s = url, model, timeout_s
        self.client = grpcclient.InferenceServerClient(grpc_address(url))
        config = self._call(lambda: self.client.get_model_config(model, as_json=True, client_timeout=timeout_s))["config"]
        (frames,), (derained,) = config["input"], config["output"]
        height, width, _ = (int(d) for d in frames["dims"])
        self.input_name, self.output_name = frames["name"], derained["name"]
        self.input_shape = (max(1, int(config.get("max_batch_size", 1))), 3, height, width)

    def _call(self, call, away: tuple[str, ...] = UNREACHABLE):  # noqa: ANN001, ANN202 - a tritonclient call
        try:
            return call()
        except self.error_type as error:
            status = str(error.status() or "")
            message = f"{self.url}: Triton model {self.model!r}: {error.message()}"
            if any(code in status or code in str(error.message()) for code in away):
                raise BackendUnavailable(f"{self.url}: the Triton server is unreachable") from None
            raise DerainError(message) from None

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Float RGB NCHW -> uint8 BGR frames on the wire -> back (exact: they came from uint8 frames)."""
        frames = np.stack([to_pixels(image.transpose(1, 2, 0)) for image in batch])
        request = self.grpc.InferInput(self.input_name, list(frames.shape), "UINT8")
        request.set_data_from_numpy(frames)
        result = self._call(lambda: self.client.infer(self.model, [request], client_timeout=self.timeout_s,
                                                      outputs=[self.grpc.InferRequestedOutput(self.output_name)]), GONE)
        return np.stack([from_pixels(frame).transpose(2, 0, 1) for frame in result.as_numpy(self.output_name)])

    def close(self) -> None:
        self.client.close()
