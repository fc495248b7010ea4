"""``log_with``: the scalars of a short run land in TensorBoard's event files, in an offline wandb run and in trackio's
local store, under the names and steps of ``metrics.jsonl`` (the packages come from the ``trackers`` extra, which
the test command installs; without them these tests are skipped)."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest

from dtm.training.dtm import DTMConfig, DTMTrainer
from dtm.training.trainer import tracker_config
from tests.shared import one_phase_config, read_metrics, tiny_model

for package in ("tensorboard", "wandb", "trackio"):
    pytest.importorskip(package, reason="the optional extras (requirements-optional.txt) are not installed")

CHECKED = ("loss", "reward_mean", "grad_norm", "eval_reward_greedy")


def run(tmp_path: Path, tracker: str) -> list[dict]:
    cfg = one_phase_config(tmp_path / "run", steps_per_h=3, log_with=tracker)
    DTMTrainer(cfg, model=tiny_model(), progress=False).train()
    return read_metrics(tmp_path / "run")


def expected(records: list[dict]) -> dict[str, dict[int, float]]:
    """Per checked name, its value at every step it was logged (metrics.jsonl is the reference)."""
    out: dict[str, dict[int, float]] = {}
    for record in records:
        for name in CHECKED:
            if name in record:
                out.setdefault(name, {})[record["step"]] = record[name]
    assert set(out) == set(CHECKED) and len(out["loss"]) == 3 and sorted(out["eval_reward_greedy"]) == [0, 3]
    return out


def assert_same(logged: dict[str, dict[int, float]], records: list[dict]) -> None:
    for name, by_step in expected(records).items():
        assert logged[name].keys() == by_step.keys(), name
        for step, value in by_step.items():
            assert math.isclose(logged[name][step], value, rel_tol=1e-6), (name, step)


def test_tensorboard_event_files_hold_every_scalar(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    records = run(tmp_path, "tensorboard")
    folder = tmp_path / "run" / "dtm"  # scalars here; the settings (hparams) in a subfolder of their own
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(folder))
    events.Reload()
    logged = {name: {e.step: e.value for e in events.Scalars(name)} for name in CHECKED}
    assert_same(logged, records)


def wandb_records(path: Path) -> list:
    """The protobuf records of a wandb run file: a 7-byte header, then records in the LevelDB log layout (32 KiB
    blocks; each chunk a 7-byte header of CRC-32, little-endian length and type, FULL = 1 or FIRST / MIDDLE / LAST
    = 2 / 3 / 4 for a record split over blocks; a block's last < 7 bytes are padding)."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos = path.read_bytes(), 32768, 7
    records, chunks = [], []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            break
        chunks.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            records.append(record)
            chunks = []
    return records


def test_offline_wandb_run_holds_every_scalar(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    records = run(tmp_path, "wandb")
    (path,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    logged: dict[str, dict[int, float]] = {}
    config: dict = {}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            for name in CHECKED:
                if name in items:
                    logged.setdefault(name, {})[items["_step"]] = items[name]
        elif kind in ("config", "run"):
            update = record.config.update if kind == "config" else record.run.config.update
            config |= {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in update}
    assert_same(logged, records)
    assert config["h"] == 1.0 and config["sampling.gen_length"] == 8


def test_local_trackio_project_holds_every_scalar(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    records = run(tmp_path, "trackio")
    from trackio.sqlite_storage import SQLiteStorage

    logs = SQLiteStorage.get_logs(project="dtm", run="run")
    logged: dict[str, dict[int, float]] = {}
    for entry in logs:
        for name in CHECKED:
            if name in entry:
                logged.setdefault(name, {})[entry["step"]] = entry[name]
    assert_same(logged, records)


def test_tracker_config_is_flat_scalars():
    cfg = DTMConfig(base_model="m", h=0.5)
    flat = tracker_config(cfg)
    assert flat["h"] == 0.5 and flat["sampling.gen_length"] == cfg.sampling.gen_length
    assert flat["load.mask_token_id"] == "None" and flat["lora.target_modules"].startswith("['q_proj'")
    assert all(isinstance(v, bool | int | float | str) for v in flat.values())


@pytest.mark.parametrize("tracker", ["mlflow", "wandb_online"])
def test_unknown_trackers_are_rejected(tracker):
    from dtm.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="log_with: must be one of 'none', 'tensorboard', 'wandb', 'trackio'"):
        load_config(DTMConfig, {"log_with": tracker})
