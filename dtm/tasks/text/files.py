"""Reading example records from local files and from the Hugging Face hub.

Local files hold one record per example:

* ``.jsonl`` (or ``.ndjson``): one JSON object per line; blank lines are skipped.
* ``.csv``: a header row naming the fields, then one row per example (the csv module's quoting rules; a field may be
  a JSON list such as ``"[3, 5, 7]"``). Blank rows are skipped.

Every malformed line raises ValueError naming ``file:line`` (for a quoted CSV record spanning several lines, its last
line); a missing file raises FileNotFoundError and a file without records ValueError naming the file. Records are
returned as ``(where, dict)`` pairs, ``where`` being ``"file:line"``, so that a task can report a bad field the same
way. (``dtm.training.data.load_jsonl`` reads token-id datasets, not these text records, hence a reader here.)

Hub datasets go through ``datasets.load_dataset`` (imported only when used: it is slow to import); records are then
labelled ``"owner/name[split]#index"``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from dtm.errors import RunError

JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)

Record = tuple[str, dict[str, Any]]


def read_records(path: str | Path) -> list[Record]:
    """``(where, record)`` pairs of a local ``.jsonl`` or ``.csv`` file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        records = _read_jsonl(path)
    elif suffix in CSV_SUFFIXES:
        records = _read_csv(path)
    else:
        known = ", ".join(JSONL_SUFFIXES + CSV_SUFFIXES)
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use one of {known}")
    if not records:
        raise ValueError(f"{path}: the dataset is empty (no records)")
    return records


def _read_jsonl(path: Path) -> list[Record]:
    records = []
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            records.append((where, record))
    return records


def _read_csv(path: Path) -> list[Record]:
    records = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header: list[str] | None = None
        try:
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if not any(cell.strip() for cell in row):
                    continue
                if header is None:
                    header = [cell.strip() for cell in row]
                    if any(not name for name in header) or len(set(header)) != len(header):
                        raise ValueError(f"{where}: the header needs distinct, non-empty field names, got {row}")
                    continue
                if len(row) != len(header):
                    raise ValueError(f"{where}: expected {len(header)} fields ({', '.join(header)}), got {len(row)}")
                records.append((where, dict(zip(header, row, strict=True))))
        except csv.Error as e:
            raise ValueError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    return records


def _load_dataset(path: str, name: str | None, split: str) -> Any:
    """``datasets.load_dataset`` (a seam for tests, which must not touch the network)."""
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is in requirements.txt
        raise ImportError("loading hub datasets needs the 'datasets' package: pip install datasets") from e
    return datasets.load_dataset(path, name, split=split)


def hub_records(path: str, split: str, name: str | None = None) -> list[Record]:
    """``(where, record)`` pairs of one split of a Hugging Face dataset."""
    try:
        rows = _load_dataset(path, name, split)
    except ConnectionError as e:
        raise RunError(
            f"cannot load {path} [{split}] from the Hugging Face hub ({e}); offline or without network, give the task "
            "local data: a file (task_options.source=PATH) or, where the task has one, its offline generator "
            "(task_options.source=generate)"
        ) from None
    records = [(f"{path}[{split}]#{i}", dict(row)) for i, row in enumerate(rows)]
    if not records:
        raise ValueError(f"{path}[{split}]: the dataset is empty (no records)")
    return records
