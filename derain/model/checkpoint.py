"""Checkpoints: one .pt file holding the config, the state dict and a free-form `meta` dict
(how it was trained, what it scores). Loaded with weights_only=True: no pickled code runs."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

from ..atomic import atomic_path
from ..errors import DerainError
from .config import ModelConfig
from .network import DerainNet

BUNDLED_CHECKPOINT = "realtime.pt"


def save_checkpoint(model: DerainNet, path: str | Path, meta: dict | None = None) -> None:
    payload = {"config": model.config.to_dict(), "state_dict": model.state_dict(), "meta": meta or {}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path | None = None, device: str = "cpu") -> tuple[DerainNet, dict]:
    """Model (in eval mode) and meta from `path`, or from the checkpoint bundled in the package."""
    path = Path(path) if path is not None else bundled_checkpoint_path()
    check_device(device)
    if not path.is_file():
        raise DerainError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
        model = DerainNet(ModelConfig.from_dict(payload["config"]))
        model.load_state_dict(payload["state_dict"])
    except Exception as error:  # torch raises many kinds for a bad file; say which file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DerainError(f"{path}: not a derain checkpoint ({reason})") from error
    return model.to(device).eval(), payload.get("meta", {})


def record_in_checkpoint(path: str | Path, key: str, value: dict) -> None:
    """Add `value` under `key` in the checkpoint's meta (e.g. the scores `derain eval` measured)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload.setdefault("meta", {})[key] = value
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def bundled_checkpoint_path() -> Path:
    return Path(str(resources.files("derain") / "checkpoints" / BUNDLED_CHECKPOINT))


def check_device(device: str) -> None:
    """A one-line error for a device torch does not know or this machine does not have."""
    try:
        kind = torch.device(device).type
    except RuntimeError as error:
        raise DerainError(f"--device {device}: {error}") from error
    if kind == "cuda" and not torch.cuda.is_available():
        raise DerainError(f"--device {device}: CUDA is not available on this machine")
