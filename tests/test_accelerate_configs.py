"""The shipped accelerate config files pass accelerate's own launch validation and select the intended engine; the
Slurm script is valid bash and launches through them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_multi_gpu_env

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "accelerate"

# file -> (processes, machines, multi_gpu, fsdp, deepspeed)
EXPECTED = {
    "single_gpu.yaml": (1, 1, False, False, False),
    "ddp_8gpu.yaml": (8, 1, True, False, False),
    "fsdp_8gpu.yaml": (8, 1, False, True, False),
    "deepspeed_zero2_8gpu.yaml": (8, 1, False, False, True),
    "multi_node_ddp.yaml": (8, 4, True, False, False),
}


def validated(path: Path):
    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "dtm.cli", "train"])
    args, _, _ = _validate_launch_command(args)
    return args


def test_every_shipped_config_is_checked():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_selects_intended_engine_in_bf16(name):
    ClusterConfig.from_yaml_file(str(CONFIGS / name))  # no unknown keys
    args = validated(CONFIGS / name)
    got = (args.num_processes, args.num_machines, args.multi_gpu, args.use_fsdp, args.use_deepspeed)
    assert got == EXPECTED[name]
    assert args.mixed_precision == "bf16"


def test_fsdp_config_builds_fsdp2_plugin(monkeypatch):
    env = prepare_multi_gpu_env(validated(CONFIGS / "fsdp_8gpu.yaml"))
    for key, value in env.items():
        if key.startswith(("ACCELERATE", "FSDP")):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True


def test_deepspeed_config_is_zero2():
    config = ClusterConfig.from_yaml_file(str(CONFIGS / "deepspeed_zero2_8gpu.yaml"))
    assert config.deepspeed_config["zero_stage"] == 2


def test_slurm_script_is_valid_bash_and_uses_the_multi_node_config():
    script = ROOT / "scripts" / "slurm_dtm.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "configs/accelerate/multi_node_ddp.yaml" in text and "--machine_rank \\$SLURM_NODEID" in text


def run_slurm_script(tmp_path: Path, scontrol: str) -> list[str]:
    """Run the Slurm script with fake scontrol (body ``scontrol``), srun and accelerate on PATH; return the argv that
    reached accelerate."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = {
        "scontrol": scontrol,
        "srun": 'shift; SLURM_NODEID=1 "$@"',  # drop --kill-on-bad-exit, run as node 1
        "accelerate": 'printf "%s\\n" "$@" > "$FAKE_OUT"',
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    out = tmp_path / "argv.txt"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "gpu-[a-b]"}
    env |= {"GPUS_PER_NODE": "4", "FAKE_OUT": str(out)}
    script = ROOT / "scripts" / "slurm_dtm.sh"
    subprocess.run(["bash", str(script), "run.yaml", "lr=1e-6", "output_dir=my run"], env=env, cwd=tmp_path, check=True)
    return out.read_text().splitlines()


def test_slurm_script_composes_one_accelerate_launch_per_node(tmp_path):
    """The per-node command carries the node's rank and all settings."""
    argv = run_slurm_script(tmp_path, 'printf "gpu-a\\ngpu-b\\n"')
    assert argv[0] == "launch"
    tail = ["-m", "dtm.cli", "train", "--config", "run.yaml", "lr=1e-6", "output_dir=my run"]
    assert argv[-len(tail) :] == tail  # overrides with spaces survive the srun/bash -c hop
    flags = dict(zip(argv[1 : -len(tail) : 2], argv[2 : -len(tail) : 2], strict=True))
    assert flags == {
        "--config_file": "configs/accelerate/multi_node_ddp.yaml",
        "--num_machines": "2",
        "--num_processes": "8",
        "--machine_rank": "1",
        "--main_process_ip": "gpu-a",
        "--main_process_port": "29500",
    }


def test_slurm_script_survives_a_host_list_longer_than_a_pipe_buffer(tmp_path):
    """A fake scontrol that writes 4 MB of host names and fails if any write fails: a reader that stops after the
    first line (``| head -n 1``) would end it with SIGPIPE, which pipefail turns into a failed job."""
    scontrol = 'printf "gpu-a\\n"; for i in $(seq 200000); do printf "gpu-%08d-long-host-name\\n" "$i"; done'
    argv = run_slurm_script(tmp_path, scontrol)
    assert argv[argv.index("--main_process_ip") + 1] == "gpu-a"
