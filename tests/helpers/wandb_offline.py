"""Reading an offline W&B run without W&B's servers: the records of its ``run-<id>.wandb`` file and the files it
logged.

The ``.wandb`` file is W&B's transaction log, the one ``wandb sync`` uploads: a 7-byte header (``:W&B``, a 2-byte
magic, a version byte), then LevelDB's log format: 32 KiB blocks of chunks, each a 7-byte header (CRC32, length,
type: full, first, middle, last) and its bytes; a block's tail shorter than a header is padding. Each whole
record is a ``wandb_internal_pb2.Record`` protobuf. (W&B's own reader, ``wandb.sdk.internal.datastore``, left the
package in newer releases, so the tests carry this one.)"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = struct.Struct("<IHB")  # crc32, length, chunk type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    """The ``Record`` protobufs of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B transaction log"
    position, pending = 7, b""
    while position + HEADER.size <= len(data):
        left = BLOCK - position % BLOCK
        if left < HEADER.size:  # padding at the end of a block
            position += left
            continue
        _, length, kind = HEADER.unpack_from(data, position)
        chunk = data[position + HEADER.size : position + HEADER.size + length]
        position += HEADER.size + length
        if kind == 0:  # zeroed space (a preallocated tail)
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def offline_run(run_dir: Path) -> dict[str, Any]:
    """What an offline run holds: ``run`` (its run record: id, project, group, job type, name), ``config``
    (key -> value), ``history`` (the logged keys -> their values, tables and images as W&B describes them:
    ``_type``, ``path`` under ``files/``), ``summary`` (key -> value) and ``exit_code`` (None: the log holds no exit
    record, the run did not finish or W&B has not written it yet), from its ``.wandb`` file."""
    (log,) = run_dir.glob("run-*.wandb")
    run, config, history, summary, exit_code = None, {}, {}, {}, None
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            _update(config, run.config.update)
        elif kind == "config":
            _update(config, record.config.update)
        elif kind == "history":
            _update(history, record.history.item)
        elif kind == "summary":
            _update(summary, record.summary.update)
        elif kind == "exit":
            exit_code = record.exit.exit_code
    return {"run": run, "config": config, "history": history, "summary": summary, "exit_code": exit_code}


def _update(into: dict[str, Any], items: Any) -> None:
    """Set each item's value at its ``key``, or at its ``nested_key`` path (W&B sends a logged table or image
    as one item per field: ``["verdicts/claims", "path"]``)."""
    for item in items:
        *parents, last = [item.key] if item.key else list(item.nested_key)
        target = into
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = json.loads(item.value_json)


def logged_table(run_dir: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """The table file (``columns``, ``data``) a history entry of ``_type`` ``table-file`` points at."""
    assert entry["_type"] == "table-file", entry
    return json.loads((run_dir / "files" / entry["path"]).read_text())
