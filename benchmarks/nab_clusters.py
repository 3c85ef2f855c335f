"""Is the NAB non-local? Per NAB block, on real rainy photos: how evenly the clusters are used
(entropy of cluster use / log K: 1 = all equal; and the largest cluster's share) and how far a
chunk of the rearranged sequence reaches (rows and columns one chunk spans, as fractions of the
feature map: a raster strip spans ~0 rows).

    python benchmarks/nab_clusters.py --label after [--checkpoint X] [--images DIR] [--num 8]
        [--crop P | --resize WxH]

`--crop P` measures centre crops of P x P, as training patches see the NAB (a 64 px patch: 256
tokens at 1/4 resolution); `--resize 1280x720` measures frames as a 720p stream sees it (61,440).

It hooks only `sort_positions` and the NAB modules' inputs, so running it on another checkout
(PYTHONPATH=<checkout>, --label before) measures that version. Results merge into
benchmarks/results/nab_clusters.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

import derain.model.nonlocal_attention as nab
from derain.atomic import atomic_path
from derain.data.io import files_in, pad_to, read_image
from derain.data.pairs import default_data_root
from derain.model import load_checkpoint


def chunk_spans(dest: torch.Tensor, height: int, width: int, chunk: int, shift: int) -> tuple[float, float]:
    """Median rows and columns spanned by a chunk, as fractions of the map's height and width."""
    order = torch.argsort(dest[0])  # token at each sorted position
    order = torch.roll(order, -shift) if shift else order
    rows, cols = (order // width).reshape(-1, chunk), (order % width).reshape(-1, chunk)
    row_span = (rows.max(1).values - rows.min(1).values).float() / max(height - 1, 1)
    col_span = (cols.max(1).values - cols.min(1).values).float() / max(width - 1, 1)
    return float(row_span.median()), float(col_span.median())


def prepare(rgb: np.ndarray, crop: int | None, resize: tuple[int, int] | None) -> np.ndarray:
    """The photo as a training patch (centre crop) or as a stream frame (resized), or as it is."""
    if crop:
        rgb = pad_to(rgb, crop, crop)
        top, left = (rgb.shape[0] - crop) // 2, (rgb.shape[1] - crop) // 2
        return np.ascontiguousarray(rgb[top : top + crop, left : left + crop])
    return cv2.resize(rgb, resize, interpolation=cv2.INTER_AREA) if resize else rgb


@torch.no_grad()
def measure(model: torch.nn.Module, images: list[np.ndarray]) -> list[dict]:
    blocks = [m for m in model.modules() if isinstance(m, nab.NonLocalAttention)]
    current: dict = {}
    records: dict[int, list[dict]] = {i: [] for i in range(len(blocks))}
    original = nab.sort_positions

    def recording_sort(keys: torch.Tensor, buckets: int, method: str) -> torch.Tensor:
        dest = original(keys, buckets, method)
        index, (h, w) = current["block"], current["shape"]
        module = blocks[index]
        clusters = keys // (buckets // module.clusters)
        use = torch.bincount(clusters.flatten(), minlength=module.clusters).float()
        share = use / use.sum()
        entropy = float(-(share[share > 0] * share[share > 0].log()).sum() / np.log(module.clusters))
        shift = module.chunk // 2 if getattr(module, "shift", False) and h * w > module.chunk else 0
        rows, cols = chunk_spans(dest, h, w, module.chunk, shift)
        records[index].append({"entropy": entropy, "largest": float(share.max()), "rows": rows, "cols": cols,
                               "tokens": h * w})
        return dest

    def remember(index: int):  # noqa: ANN202
        def hook(_module, inputs):  # noqa: ANN001, ANN202
            current.update(block=index, shape=tuple(inputs[0].shape[1:3]))
        return hook

    handles = [block.register_forward_pre_hook(remember(i)) for i, block in enumerate(blocks)]
    nab.sort_positions = recording_sort
    try:
        for rgb in images:
            model(torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None])
    finally:
        nab.sort_positions = original
        for handle in handles:
            handle.remove()
    names = {id(m): n for n, m in model.named_modules()}
    return [{"block": names[id(block)], **{k: round(float(np.mean([r[k] for r in records[i]])), 3)
                                          for k in ("entropy", "largest", "rows", "cols", "tokens")}}
            for i, block in enumerate(blocks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="e.g. before / after")
    parser.add_argument("--checkpoint", type=Path, help="default: the bundled checkpoint")
    default = default_data_root()
    parser.add_argument("--images", type=Path, default=default and default / "real" / "SIRR-real147",
                        required=default is None, help="real rainy photos (default: $DERAIN_DATA/real/SIRR-real147)")
    parser.add_argument("--num", type=int, default=8, help="images, spread over the folder")
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--crop", type=int, help="centre crops of this many pixels square (a training patch)")
    view.add_argument("--resize", help="WxH: frames resized to this (a stream), e.g. 1280x720")
    parser.add_argument("-o", "--output", type=Path,
                        default=Path(__file__).parent / "results" / "nab_clusters.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_checkpoint(args.checkpoint)
    files = files_in(args.images)
    images = [files[i] for i in np.linspace(0, len(files) - 1, min(args.num, len(files))).astype(int)]
    resize = tuple(int(v) for v in args.resize.lower().split("x")) if args.resize else None
    blocks = measure(model, [prepare(read_image(path).rgb, args.crop, resize) for path in images])
    summary = {k: round(float(np.mean([b[k] for b in blocks])), 3) for k in ("entropy", "largest", "rows", "cols")}
    stored = json.loads(args.output.read_text()) if args.output.is_file() else {}
    stored[args.label] = {"checkpoint": str(args.checkpoint or "bundled"), "config": model.config.name,
                          "images": [str(p.name) for p in images], "view": (f"crop {args.crop}" if args.crop else
                                                                              f"resize {args.resize}" if resize else "whole"),
                          "mean_over_blocks": summary, "blocks": blocks}
    with atomic_path(args.output) as tmp:
        tmp.write_text(json.dumps(stored, indent=2) + "\n")
    print(json.dumps(stored[args.label]["mean_over_blocks"]), json.dumps(blocks, indent=1))


if __name__ == "__main__":
    main()
