"""The metrics log of a run: one JSON record per line (``metrics.jsonl``), read back by the studies and reports."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


class MetricsLog:
    """Append one JSON object per call to ``metrics.jsonl`` (flushed, so a crash keeps every written line)."""

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step``, the final evaluation (a resumed run makes its own) and any torn line (used
        when resuming from a checkpoint)."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
                if record.get("step", 0) <= step and record.get("eval") != "final":
                    kept.append(line)
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
        self.path.write_text("".join(line + "\n" for line in kept))
