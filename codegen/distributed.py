"""Sweeps on a Dask cluster: the grid in partitions, each evaluated on a worker by the same
generated kernel as a local sweep and written as one Parquet part file.

    shardcost sweep tp seq_len=1:10000000 --engine dask [--scheduler tcp://host:8786] -o DIR

DIR receives ``part-00000.parquet``, ``part-00001.parquet``, ... in grid order (a part
whose rows are all invalid is left out): read back in name order (pyarrow, pandas, Dask,
Spark) the rows are those of the single-process sweep, in its order. Workers write their
parts themselves, so on a cluster DIR must be storage every worker and this process see.
Without a scheduler, a ``distributed.LocalCluster`` in this process does the work
(threads: numpy releases the GIL). Dask is an optional extra: ``shardcost[dask]``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from shardcost.errors import InputError
from shardcost.formulas import Layout, Phase

from .sweep import (
    CHUNK_BYTES,
    Grid,
    ParquetSink,
    Progress,
    SweepResult,
    grid,
    need_arrow,
    warn_wide,
    widened,
)

PARTITION_ROWS = 2_000_000  # rows of one part file, at most
_PART = "part-{:05d}.parquet"


@dataclass
class Part:
    """What one partition wrote: rows, rows dropped by reason, count columns as strings."""

    rows: int
    combinations: int
    dropped: dict[str, int] = field(default_factory=dict)
    wide: list[str] = field(default_factory=list)


def sweep_dask(
    layout: Layout,
    phase: Phase | str,
    values: Mapping[str, Sequence[Any]],
    directory: str | os.PathLike[str],
    *,
    hardware_name: str | None = None,
    scheduler: str | None = None,
    partition_rows: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    progress: bool | None = None,
    stream: IO[str] | None = None,
) -> SweepResult:
    """Evaluate every combination of ``values`` on a Dask cluster (the one at ``scheduler``,
    else a local one) and write the valid rows as partitioned Parquet into ``directory``.

    The parts are written into a temporary directory beside it, which replaces it once
    every part is done; an existing ``directory`` must be empty or hold only part files.
    """
    started = time.perf_counter()
    distributed = _need_dask()
    need_arrow("the dask engine", extra="dask")
    g = grid(layout, phase, values, hardware_name)
    target = Path(directory)
    _check_target(target)
    result = SweepResult(total=g.total)
    bar = Progress(g.total, stream or sys.stderr, progress)
    done = 0
    with _client(distributed, scheduler) as client:
        threads = sum(client.nthreads().values()) or 1
        rows = partition_rows or _partition_rows(g, threads)
        spans = list(g.spans(rows))
        parts = tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            shared = client.scatter(g, broadcast=True)
            paths = [str(Path(parts) / _PART.format(i)) for i in range(len(spans))]
            futures = client.map(
                write_part, [shared] * len(spans), spans, paths, chunk_bytes=chunk_bytes
            )
            written: dict[int, Part] = {}
            where = {future.key: i for i, future in enumerate(futures)}
            try:
                for future in distributed.as_completed(futures):
                    written[where[future.key]] = part = future.result()
                    done += part.combinations
                    bar.update(done)
            finally:
                bar.close(done)
            for i in sorted(written):  # in grid order, whatever order they finished in
                result.add(written[i].rows, written[i].dropped)
            result.check()
            wide = [c for c in g.columns if any(c in part.wide for part in written.values())]
            if wide:
                warn_wide(wide)
                _unify(paths, wide)
            _replace(Path(parts), target)
        except BaseException:
            shutil.rmtree(parts, ignore_errors=True)
            raise
    result.seconds = time.perf_counter() - started
    return result


def write_part(
    g: Grid, span: tuple[int, int, int], path: str, *, chunk_bytes: int = CHUNK_BYTES
) -> Part:
    """Rows ``span`` (switch combination, first row, end row) of the grid into one Parquet
    file, chunk by chunk; no file when none of them is valid. Runs on a worker."""
    pa = need_arrow("the dask engine", extra="dask")
    combo, lo, hi = span
    sink = ParquetSink(pa, path, g.columns, quiet=True)
    part = Part(0, hi - lo)
    step = g.chunk_rows(chunk_bytes)
    try:
        for start in range(lo, hi, step):
            block = g.evaluate(combo, start, min(start + step, hi))
            sink.write(block)
            part.rows += block.rows
            for reason, n in block.dropped.items():
                part.dropped[reason] = part.dropped.get(reason, 0) + n
    except BaseException:
        sink.close(ok=False)
        Path(path).unlink(missing_ok=True)
        raise
    sink.close()
    part.wide = sink.wide
    return part


def _partition_rows(g: Grid, threads: int) -> int:
    """Rows per partition: a few partitions per thread, each at least a chunk and at most
    ``PARTITION_ROWS``."""
    wanted = math.ceil(g.per_combo * len(g.combos) / (4 * threads))
    return max(g.chunk_rows(), min(PARTITION_ROWS, wanted))


def _unify(paths: Sequence[str], wide: Sequence[str]) -> None:
    """Rewrite the parts that hold a count column of ``wide`` as int64 with it as strings,
    so that every part has one schema (a value past int64 turned it into strings)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in map(Path, paths):
        if not path.exists():
            continue
        table = pq.read_table(path)
        schema = widened(pa, table.schema, wide)
        if schema != table.schema:
            pq.write_table(table.cast(schema), path.with_suffix(".wide"))
            path.with_suffix(".wide").replace(path)


def _check_target(target: Path) -> None:
    """InputError unless ``target`` is new, empty, or a directory of part files."""
    if target.is_dir():
        other = [p.name for p in target.iterdir() if not _is_part(p.name)]
        if other:
            raise InputError(
                f"{target} holds files other than Parquet parts ({other[0]}, ...): "
                "give a new or empty directory"
            )
    elif target.exists():
        raise InputError(f"{target} is a file: the dask engine writes a directory of parts")
    elif not target.parent.is_dir():
        raise InputError(f"cannot write {target}: {target.parent} is not a directory")


def _is_part(name: str) -> bool:
    return name.startswith("part-") and name.endswith(".parquet")


def _replace(parts: Path, target: Path) -> None:
    """Put the directory ``parts`` at ``target`` (an old one of part files removed)."""
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
        target.replace(old / "parts")
        parts.replace(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        parts.replace(target)


def _need_dask() -> Any:
    """The ``distributed`` module, or the InputError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise InputError("the dask engine needs Dask: pip install 'shardcost[dask]'") from None
    return distributed


@contextlib.contextmanager
def _client(distributed: Any, scheduler: str | None) -> Iterator[Any]:
    """A client of the cluster at ``scheduler``, else of a local cluster in this process."""
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with client:
            yield client
        return
    threads = max(1, min(4, os.cpu_count() or 1))
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=threads,
            processes=False,
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client
