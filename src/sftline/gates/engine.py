"""Where the per-example work of the gates runs: in-process, or on Ray Data.

A gate that splits into `features(batch)` (pure, per example, order-preserving: normalised
keys, PII matches, token counts) and `decide(examples, features)` (the set-level decision:
groups, clusters, medians) has its features computed by the engine; the decision runs in the
driver on those compact results. Gates without `features` run whole in the driver.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sftline.data.example import Example
from sftline.errors import OptionalDependencyMissing

Features = Callable[[Sequence[Example]], list[Any]]


class Engine(Protocol):
    name: str

    def map(self, features: Features, examples: Sequence[Example]) -> list[Any]: ...


class LocalEngine:
    """In-process, in batches: per-batch temporaries (tokenizer encodings, say) stay bounded."""

    name = "local"

    def __init__(self, batch_size: int = 8192) -> None:
        self.batch_size = batch_size

    def map(self, features: Features, examples: Sequence[Example]) -> list[Any]:
        results: list[Any] = []
        for start in range(0, len(examples), self.batch_size):
            results += features(examples[start : start + self.batch_size])
        return results


class RayEngine:
    """Ray Data `map_batches` over the examples, in order; starts a local Ray instance if none runs."""

    name = "ray"

    def __init__(
        self, *, address: str | None = None, num_cpus: int | None = None, batch_size: int = 2048
    ) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise OptionalDependencyMissing("ray[data]", "--engine ray") from None
        self.address = address
        self.num_cpus = num_cpus
        self.batch_size = batch_size

    def _ensure_started(self) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(
                address=self.address,
                num_cpus=self.num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )

    def map(self, features: Features, examples: Sequence[Example]) -> list[Any]:
        import ray.data

        from sftline.data.parquet_io import examples_to_table, table_to_examples

        if not examples:
            return []
        self._ensure_started()
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False

        def run(batch: Any) -> dict[str, list[bytes]]:
            import pyarrow as pa

            from sftline.data.parquet_io import EXAMPLE_SCHEMA

            table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
            values = features(table_to_examples(table.cast(EXAMPLE_SCHEMA)))
            return {"value": [pickle.dumps(v) for v in values]}

        dataset = ray.data.from_arrow(examples_to_table(examples))
        rows = dataset.map_batches(run, batch_format="pyarrow", batch_size=self.batch_size).take_all()
        return [pickle.loads(row["value"]) for row in rows]

    def shutdown(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()


def make_engine(name: str) -> Engine:
    if name == "local":
        return LocalEngine()
    if name == "ray":
        return RayEngine()
    raise ValueError(f"unknown engine {name!r}")
