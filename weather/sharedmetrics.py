"""The task metrics read back from every process's files (PROMETHEUS_MULTIPROC_DIR): doctor, /ops/ and beat use them."""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.samples import Sample

WAIT_FAMILY, RUN_FAMILY = "f_brain_task_queue_wait_seconds", "f_brain_task_runtime_seconds"


def shared() -> bool:
    """Whether this process sees the metric files the pools write."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def histogram_quantiles(samples: dict[float, float], quantiles: tuple[float, ...]) -> list[float | None]:
    """Quantiles estimated from cumulative bucket counts {upper bound: count} (the bound reached)."""
    total = samples.get(float("inf"), 0.0)
    if not total:
        return [None for _ in quantiles]
    bounds = sorted(samples)
    return [next(bound for bound in bounds if samples[bound] >= q * total) for q in quantiles]


def shared_samples(*families: str) -> Iterator[tuple[str, Sample]]:
    """Samples of the named metric families, read from every process's metric files."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    for family in registry.collect():
        if family.name in families:
            for sample in family.samples:
                yield family.name, sample


def lane_histograms() -> dict[str, dict[str, dict[float, float]]]:
    """Cumulative buckets of queue wait ("wait") and run time ("run") per lane, summed over every process."""
    found: dict[str, dict[str, dict[float, float]]] = {}
    for family, sample in shared_samples(WAIT_FAMILY, RUN_FAMILY):
        if sample.name.endswith("_bucket"):
            kind = "wait" if family == WAIT_FAMILY else "run"
            buckets = found.setdefault(sample.labels["lane"], {}).setdefault(kind, {})
            bound = float(sample.labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return found
