"""A real Triton Inference Server on 127.0.0.1, from the `tritonserver` binary that PyPI's
nvidia-pytriton wheel carries (installed with --no-deps beside the `serve` extra): for tests, benchmarks and trying a repository
without Docker. It has the Python backend only (no TensorRT or ONNX Runtime backend: those come
with NVIDIA's containers), so it serves `derain triton --python-backend` repositories.

What it needs, found by trying: the backends folder copied with the Python-backend stub of the
running Python put in backends/python/; the wheel's libraries on LD_LIBRARY_PATH; and this
environment's bin/ first on PATH, through which the stub's embedded Python finds this
environment's site-packages (PYTHONPATH does not reach it)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from ..errors import DerainError


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalTritonServer:
    """`with LocalTritonServer(repo, workdir) as server:` serves `repo`; stopped by its process id."""

    def __init__(self, repository: Path, workdir: Path, ready_timeout: float = 120.0,
                 grpc_port: int | None = None) -> None:
        """`grpc_port`: a fixed port (a restarted server where its clients expect it); default a free one."""
        found = importlib.util.find_spec("pytriton")  # located, not imported: only its binary is used
        if found is None or not found.submodule_search_locations:
            raise DerainError("a local Triton server needs nvidia-pytriton's tritonserver: "
                              "pip install --no-deps nvidia-pytriton==0.7.0")
        package = Path(list(found.submodule_search_locations)[0])
        dist = package / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise DerainError(f"nvidia-pytriton has no Python-backend stub for Python {version}")
        backends = workdir / "backends"
        shutil.copytree(dist / "backends", backends, dirs_exist_ok=True)
        shutil.copy(stub, backends / "python" / stub.name)
        self.grpc_port, self.http_port = grpc_port or _free_port(), _free_port()
        libraries = [str(package.parent / "nvidia_pytriton.libs"),
                     sysconfig.get_config_var("LIBDIR") or ""]
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               "LD_LIBRARY_PATH": os.pathsep.join([*libraries, os.environ.get("LD_LIBRARY_PATH", "")])}
        self.log = workdir / "tritonserver.log"
        command = [str(dist / "bin" / "tritonserver"), f"--model-repository={repository}",
                   f"--backend-directory={backends}", "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
                   f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}", "--allow-metrics=false"]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            self._wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    def _wait_ready(self, timeout: float) -> None:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(f"127.0.0.1:{self.grpc_port}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if client.is_server_ready():
                    return
            except Exception:  # tritonclient's InferenceServerException while it starts  # noqa: BLE001
                pass
            time.sleep(0.25)
        tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
        raise DerainError(f"tritonserver did not become ready ({' | '.join(tail)})")

    def stop(self) -> None:
        """SIGTERM to the server's own pid (no pkill), then SIGKILL if it lingers."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> "LocalTritonServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
