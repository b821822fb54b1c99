"""Where the per-example work of the gates runs: in-process, or on Ray Data.

A gate that splits into `features(batch)` (pure, per example, order-preserving: normalised
keys, PII matches, contamination matches, token counts) and `decide(examples, features)` (the
set-level decision: groups, clusters, medians) has its features computed by the engine; the
decision runs in the driver on those compact results. The near-duplicate gate asks the engine
for `similar_pairs`: in process, `NearDuplicateIndex`; on Ray, the same search cut into steps
with two shuffles between them (`sftline.text.pair_search`). Other gates run whole in the driver.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sftline.data.example import Example
from sftline.errors import OptionalDependencyMissing
from sftline.text import pair_search
from sftline.text.minhash import (
    NearDuplicateIndex,
    ShingleSpec,
    SimilarPairs,
    check_settings,
    optimal_bands,
)

Features = Callable[[Sequence[Example]], list[Any]]


@dataclass(frozen=True)
class ExampleTexts:
    """The texts a gate compares, made from its examples one by one (`texts[i]`).

    `parquet` is a Parquet file of the same examples (the checked version's object): an engine
    with workers may read them there and make the texts on the workers, instead of sending
    them the texts.
    """

    examples: Sequence[Example]
    text: Callable[[Example], str]
    parquet: Path | None = None

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> str:
        return self.text(self.examples[i])

    def all(self) -> list[str]:
        return [self.text(e) for e in self.examples]


Texts = Sequence[str] | ExampleTexts


class Engine(Protocol):
    name: str

    def map(self, features: Features, examples: Sequence[Example]) -> list[Any]: ...

    def similar_pairs(
        self, texts: Texts, *, threshold: float, num_perm: int, seed: int, shingle: ShingleSpec
    ) -> SimilarPairs:
        """Verified near-duplicate pairs of the texts, as `NearDuplicateIndex.similar_pairs()`
        finds them."""
        ...


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

    def similar_pairs(
        self, texts: Texts, *, threshold: float, num_perm: int, seed: int, shingle: ShingleSpec
    ) -> SimilarPairs:
        values = texts.all() if isinstance(texts, ExampleTexts) else texts
        options = asdict(shingle)
        index = NearDuplicateIndex.build(values, threshold=threshold, num_perm=num_perm, seed=seed, **options)
        return index.similar_pairs()


_BLOCKS_PER_CPU = 4
"""Blocks (tasks) per CPU of the cluster, and shuffle partitions per CPU: a few per worker keep
all busy to the end, few enough that a sort shuffle's blocks x partitions pieces stay small."""
_ENTRIES_PER_PARTITION = 4_000_000
"""Band entries per shuffle partition at most (22 bytes each): a partition is sorted whole in
one worker."""
_MAX_BLOCK_ROWS = 200_000
"""Rows per block at most: a block's signatures (512 bytes a row at 128 permutations) and
their temporaries stay near 200 MB in one worker."""


class RayEngine:
    """Ray Data over the examples, in order; starts a local Ray instance if none runs.

    `map` runs a gate's `features` in `map_batches`. `similar_pairs` runs the near-duplicate
    search on the workers: signatures in `map_batches`, LSH buckets grouped across workers by a
    shuffle on (band, key), candidates deduplicated by a second shuffle on the pair and verified
    against the signature matrix, which is put in the object store once (each node holds one
    copy, its workers read it without copying). Only the verified pairs and the signatures come
    back to the driver, which groups them as in process.

    `read_paths`: whether the workers read a Parquet source (`ExampleTexts.parquet`) themselves;
    by default, when every node of the cluster runs on the driver's machine (so sees its files).
    Set it True for a cluster with shared storage at the same path.
    """

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        batch_size: int = 2048,
        partitions: int | None = None,
        read_paths: bool | None = None,
    ) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise OptionalDependencyMissing("ray[data]", "--engine ray") from None
        self.address = address
        self.num_cpus = num_cpus
        self.batch_size = batch_size
        self.partitions = partitions
        self.read_paths = read_paths

    def start(self) -> None:
        """Connects to Ray (starting a local instance when no address is given) and sets Ray
        Data up for the engine; later calls only set it up again."""
        import ray
        import ray.data
        from ray.data.context import ShuffleStrategy

        if not ray.is_initialized():
            ray.init(
                address=self.address,
                num_cpus=self.num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        # A groupby on a few partitions: the sort shuffle took 2 s for 14M band entries on 2 CPUs,
        # Ray 2.60's default hash shuffle (actors per partition) 12 s.
        context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED

    def _cpus(self) -> int:
        import ray

        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def _reads_paths(self) -> bool:
        import ray

        if self.read_paths is not None:
            return self.read_paths
        here = ray.util.get_node_ip_address()
        return all(node["NodeManagerAddress"] == here for node in ray.nodes() if node["Alive"])

    def _block_rows(self, n: int) -> int:
        """Rows per block: at least a batch, enough blocks for every CPU, none too large."""
        spread = math.ceil(n / (_BLOCKS_PER_CPU * self._cpus()))
        return max(1, min(max(self.batch_size, spread), _MAX_BLOCK_ROWS))

    def map(self, features: Features, examples: Sequence[Example]) -> list[Any]:
        import ray.data

        from sftline.data.parquet_io import examples_to_table

        if not examples:
            return []
        self.start()
        table = examples_to_table(examples)
        rows = self._block_rows(table.num_rows)
        # one block per task: a single block would be one task on one worker, whatever its size
        dataset = ray.data.from_arrow([table.slice(k, rows) for k in range(0, table.num_rows, rows)])
        run = functools.partial(_features_batch, features=features)
        mapped = dataset.map_batches(run, batch_format="pyarrow", batch_size=self.batch_size)
        results: list[Any] = []
        for batch in _blocks(mapped):
            results += map(pickle.loads, batch.column("value").to_pylist())
        return results

    def similar_pairs(
        self, texts: Texts, *, threshold: float, num_perm: int, seed: int, shingle: ShingleSpec
    ) -> SimilarPairs:
        import ray

        check_settings(threshold, num_perm, shingle)
        n = len(texts)
        if n < 2:  # no pair to look for
            return LocalEngine().similar_pairs(
                texts, threshold=threshold, num_perm=num_perm, seed=seed, shingle=shingle
            )
        self.start()
        entries_per_row = optimal_bands(threshold, num_perm)[0]
        partitions = self.partitions or max(
            _BLOCKS_PER_CPU * self._cpus(), math.ceil(n * entries_per_row / _ENTRIES_PER_PARTITION)
        )
        sign = functools.partial(
            _signature_batch, spec=shingle, num_perm=num_perm, seed=seed, threshold=threshold
        )
        signed = (
            self._texts(texts)
            .map_batches(sign, batch_format="pyarrow", batch_size=None)
            .materialize()  # read twice: for the signature matrix and for the band entries
        )
        sides = ray.put(_gathered(signed, n, num_perm))
        entries = functools.partial(_entries_batch, partitions=partitions)
        candidates = functools.partial(_candidates_group, n=n, partitions=partitions)
        # the reference in a list: Ray resolves only top-level references, and each task gets it
        verify = functools.partial(_verified_group, n=n, sides=[sides], threshold=threshold)
        found = (
            signed.select_columns(["row", "keys"])  # not the signatures: 4x the bytes
            .map_batches(entries, batch_format="pyarrow", batch_size=None)
            .groupby("part")
            .map_groups(candidates, batch_format="pyarrow")
            .groupby("part")
            .map_groups(verify, batch_format="pyarrow")
        )
        i, j, estimate = _collected(_blocks(found))
        # the driver's view of the object store's copy: no second copy in the driver
        return SimilarPairs(i, j, estimate, ray.get(sides)[0], threshold, seed, shingle)

    def _texts(self, texts: Texts) -> Any:
        """A dataset of (row, text) in blocks: read from the Parquet source on the workers where
        there is one, else the driver's texts."""
        import pyarrow as pa
        import ray
        import ray.data

        n, rows = len(texts), self._block_rows(len(texts))
        if isinstance(texts, ExampleTexts) and texts.parquet is not None and self._reads_paths():
            positions = _id_positions([e.id for e in texts.examples])
            if positions is not None:
                read = functools.partial(_parquet_blocks, rows=rows)
                made = functools.partial(_text_batch, text=texts.text, positions=[ray.put(positions)])
                return (
                    ray.data.from_items([{"path": str(texts.parquet)}])
                    .map_batches(read, batch_format="pyarrow", batch_size=None)
                    .repartition(math.ceil(n / rows))  # one task reads the file; all make the texts
                    .map_batches(made, batch_format="pyarrow", batch_size=None)
                )
        values = texts.all() if isinstance(texts, ExampleTexts) else list(texts)
        table = pa.table({"row": np.arange(n, dtype=np.int64), "text": values})
        return ray.data.from_arrow([table.slice(k, rows) for k in range(0, n, rows)])

    def shutdown(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()


# The steps of RayEngine's work, at module level so that Ray pickles them by reference.


def _features_batch(batch: Any, *, features: Features) -> Any:
    import pyarrow as pa

    from sftline.data.parquet_io import EXAMPLE_SCHEMA, table_to_examples

    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    values = features(table_to_examples(table.cast(EXAMPLE_SCHEMA)))
    return _table(value=[pickle.dumps(v) for v in values])


def _id_key(ids: Sequence[str]) -> np.ndarray:
    """An 8-byte digest of each example id (uint64)."""
    digests = b"".join(hashlib.blake2b(i.encode(), digest_size=8).digest() for i in ids)
    return np.frombuffer(digests, "<u8").astype(np.uint64)


def _id_positions(ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """(sorted id digests, the position of each): where the workers look up the row of an
    example they read. Rows read from a file come in an order Ray Data does not promise; the ids
    of a version are unique. None when two digests collide (then the texts are sent instead)."""
    keys = _id_key(ids)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    return None if np.any(keys[1:] == keys[:-1]) else (keys, order)


def _parquet_blocks(batch: Any, *, rows: int) -> Iterator[Any]:
    """The rows of each Parquet file named in the batch, `rows` at a time. (Not
    `ray.data.read_parquet`: Ray 2.60 reads only names that end in .parquet, whatever
    `file_extensions` says, and objects are named by their sha256.)"""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in batch.column("path").to_pylist():
        for chunk in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield pa.Table.from_batches([chunk])


def _text_batch(batch: Any, *, text: Callable[[Example], str], positions: list[Any]) -> Any:
    import ray

    from sftline.data.parquet_io import EXAMPLE_SCHEMA, table_to_examples

    examples = table_to_examples(batch.cast(EXAMPLE_SCHEMA))
    keys, order = ray.get(positions[0])
    mine = _id_key([e.id for e in examples])
    at = np.minimum(np.searchsorted(keys, mine), len(keys) - 1)
    if np.any(keys[at] != mine):
        raise ValueError("the Parquet source holds examples that are not the ones checked")
    return _table(row=order[at], text=[text(e) for e in examples])


def _signature_batch(batch: Any, *, spec: ShingleSpec, num_perm: int, seed: int, threshold: float) -> Any:
    texts = batch.column("text").to_pylist()
    sig, keys = pair_search.signature_rows(texts, spec, num_perm, seed, threshold)
    return _table(row=batch.column("row"), sig=_fixed(sig), keys=_fixed(keys))


def _entries_batch(batch: Any, *, partitions: int) -> Any:
    return _table(**pair_search.band_entries(_vector(batch, "row"), _matrix(batch, "keys"), partitions))


def _candidates_group(group: Any, *, n: int, partitions: int) -> Any:
    band, key, row = (_vector(group, name) for name in ("band", "key", "row"))
    codes = pair_search.bucket_candidates(band, key, row, n)
    return _table(part=pair_search.pair_partition(codes, partitions), code=codes)


def _verified_group(group: Any, *, n: int, sides: list[Any], threshold: float) -> Any:
    import ray

    i, j, estimate = pair_search.verified_pairs(_vector(group, "code"), n, ray.get(sides[0]), threshold)
    return _table(i=i, j=j, estimate=estimate)


# Batches go in and out as Arrow tables: Ray Data turns a dict of numpy arrays into a block
# ~6x slower than the work of the band-entries step itself (measured: 2.9 s against 0.5 s for
# 2.8M entries). Matrices travel as fixed-size lists.


def _blocks(dataset: Any) -> Iterator[Any]:
    """The dataset's blocks in the driver, as Arrow tables, in order."""
    return dataset.iter_batches(batch_size=None, batch_format="pyarrow")  # type: ignore[no-any-return]


def _table(**columns: Any) -> Any:
    import pyarrow as pa

    return pa.table(columns)


def _fixed(matrix: np.ndarray) -> Any:
    """A (rows x width) matrix as an Arrow column of fixed-size lists, without a copy."""
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def _vector(table: Any, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy())


def _matrix(table: Any, name: str) -> np.ndarray:
    column = table.column(name).combine_chunks()
    return np.asarray(column.flatten().to_numpy()).reshape(len(column), column.type.list_size)


def _gathered(signed: Any, n: int, num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """The signature matrix (in row order) and its low bytes, from the signed blocks."""
    sig = np.empty((n, num_perm), np.uint32)
    seen = np.zeros(n, np.int64)
    for batch in _blocks(signed.select_columns(["row", "sig"])):
        rows = _vector(batch, "row")
        sig[rows] = _matrix(batch, "sig")
        np.add.at(seen, rows, 1)
    if np.any(seen != 1):  # a Parquet source that holds other examples, or some twice
        once = int(np.sum(seen == 1))
        raise ValueError(f"the Parquet source does not hold the checked examples once each ({once} of {n})")
    return sig, sig.astype(np.uint8)


def _collected(batches: Iterator[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The verified pairs of every partition, sorted by (i, j) as the in-process search gives them."""
    parts = [b for b in batches if b.num_rows]
    i = np.concatenate([np.empty(0, np.int64)] + [_vector(b, "i") for b in parts])
    j = np.concatenate([np.empty(0, np.int64)] + [_vector(b, "j") for b in parts])
    estimate = np.concatenate([np.empty(0, np.float64)] + [_vector(b, "estimate") for b in parts])
    order = np.lexsort((j, i))
    return i[order], j[order], estimate[order]


def make_engine(name: str) -> Engine:
    if name == "local":
        return LocalEngine()
    if name == "ray":
        return RayEngine()
    raise ValueError(f"unknown engine {name!r}")
