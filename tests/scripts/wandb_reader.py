"""Read an offline W&B run file (``run-*.wandb``: a LevelDB-style record log of
``wandb_internal_pb2.Record`` messages behind a 7-byte ``:W&B`` header): the history rows, the run's
identity and config, its metric definitions and its final summary."""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7


def read_records(path: str | Path) -> list[bytes]:
    data = Path(path).read_bytes()
    if not data.startswith(b":W&B"):
        raise ValueError(f"{path} is not a W&B run file")
    pos, records, pending = HEADER, [], b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:  # block padding
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            records.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            records.append(pending + chunk)
            pending = b""
    return records


def parsed_records(path: str | Path) -> list[Any]:
    """The run file's ``wandb_internal_pb2.Record`` messages, in order."""
    from wandb.proto import wandb_internal_pb2

    parsed = []
    for raw in read_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        parsed.append(record)
    return parsed


def wait_until_complete(path: str | Path, timeout: float = 60.0) -> None:
    """Wait until the run file ends with its ``exit`` record. In the process that ran it, W&B's
    service may still be writing the file when ``run.finish()`` returns (a file of its header alone
    was seen); a finished process's file is complete."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            records = parsed_records(path) if Path(path).stat().st_size > HEADER else []
        except Exception:  # a record cut short by the writer: not complete yet  # noqa: BLE001
            records = []
        if records and records[-1].WhichOneof("record_type") == "exit":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: no exit record after {timeout:.0f} s")
        time.sleep(0.1)


def history(path: str | Path) -> list[dict[str, Any]]:
    """Every logged history row as {key: value}."""
    return [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item}
            for record in parsed_records(path) if record.WhichOneof("record_type") == "history"]


def _apply(target: dict[str, Any], items: Any, removals: Any = ()) -> None:
    """Apply config / summary update items (``key`` or ``nested_key`` path, ``value_json``) to ``target``."""
    for item in items:
        path = list(item.nested_key) or [item.key]
        node = target
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = json.loads(item.value_json)
    for item in removals:
        path = list(item.nested_key) or [item.key]
        node = target
        for part in path[:-1]:
            node = node.get(part, {})
        node.pop(path[-1], None)


def run_info(path: str | Path) -> dict[str, Any]:
    """The run as the file records it: ``name``, ``group``, ``tags`` and ``config`` (the run record's
    config with every later config update applied; W&B's own ``_wandb`` key left out), ``metrics``
    (``define_metric`` records: name or glob -> {``step_metric``, ``summary`` (the aggregations, e.g.
    ``["max", "last"]``)}) and ``summary`` (every summary update applied in order: the final summary)."""
    info: dict[str, Any] = {"name": None, "group": None, "tags": [], "config": {}, "metrics": {},
                            "summary": {}}
    for record in parsed_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            info.update(name=run.display_name, group=run.run_group, tags=list(run.tags))
            _apply(info["config"], run.config.update, run.config.remove)
        elif kind == "config":
            _apply(info["config"], record.config.update, record.config.remove)
        elif kind == "metric":
            metric = record.metric
            summary = [field.name for field, value in metric.summary.ListFields() if value is True]
            info["metrics"][metric.name or metric.glob_name] = {"step_metric": metric.step_metric or None,
                                                                "summary": summary}
        elif kind == "summary":
            _apply(info["summary"], record.summary.update, record.summary.remove)
    info["config"].pop("_wandb", None)
    return info
