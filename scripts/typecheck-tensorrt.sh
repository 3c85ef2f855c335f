#!/usr/bin/env bash
# Type-check the TensorRT layer against NVIDIA's API as the tensorrt-stubs package (10.13) describes it;
# TensorRT itself cannot be installed on our machines. The stubs go into a throwaway folder, never
# the project's venv: they install a `tensorrt` package that would make TensorRT look present.
# They ship no py.typed marker and two syntax slips (a parameter named `in`, a non-default
# parameter after defaults), so a private copy is patched and passed on MYPYPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q mypy numpy
"$work/venv/bin/pip" install -q --no-deps --target "$work/site" tensorrt-stubs
mkdir "$work/stubs"
cp -r "$work/site/tensorrt" "$work/site/tensorrt_bindings" "$work/stubs/"
sed -i -e 's/\([(,] *\)in: /\1in_: /g' \
    -e 's/, channel_axis: int) -> IScaleLayer/, channel_axis: int = ...) -> IScaleLayer/' \
    "$work/stubs/tensorrt_bindings/tensorrt.pyi"
cat > "$work/mypy.ini" <<'INI'
[mypy]
python_version = 3.10
ignore_missing_imports = True
follow_imports = silent

[mypy-tensorrt.*,tensorrt_bindings.*]
ignore_errors = True
INI
MYPYPATH="$work/stubs" "$work/venv/bin/mypy" --config-file "$work/mypy.ini" \
    derain/engines derain/runtime/tensorrt_backend.py scripts/device_smoke.py
