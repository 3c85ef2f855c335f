"""Small helpers around Polygraphy's Comparator, shared by the export parity check and the
precision report (no torch here)."""

from __future__ import annotations

from typing import Any


def quiet_polygraphy():  # noqa: ANN201 - a context manager
    """Polygraphy logs every iteration; we report the numbers ourselves. Failures still raise."""
    from polygraphy.logger import G_LOGGER

    return G_LOGGER.verbosity(G_LOGGER.CRITICAL)


def output_stats(accuracy: Any, output_name: str) -> list[Any]:
    """The per-iteration OutputCompareResult of one output, from what compare_accuracy returned:
    a list of results (one per compare function) since Polygraphy 0.50, one dict before."""
    per_function = [accuracy] if hasattr(accuracy, "values") else list(accuracy)
    return [step[output_name] for result in per_function for pair in result.values() for step in pair]


def simple_compare(**options: Any) -> Any:
    """Polygraphy's element-wise comparison: SimpleCompareFunc where it exists (CompareFunc.simple
    is deprecated since 0.53 and goes in 0.60), CompareFunc.simple on older releases."""
    from polygraphy import comparator

    factory = getattr(comparator, "SimpleCompareFunc", None) or comparator.CompareFunc.simple
    return factory(**options)
