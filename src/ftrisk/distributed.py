"""Multi-process training through accelerate (DDP, FSDP, DeepSpeed ZeRO-3), for the attack stage.

``ftrisk attack CONFIG --accelerate-config ddp --num-processes 4`` re-executes itself as
``accelerate launch --config_file <packaged ddp.yaml> --num_processes 4 -m ftrisk.cli attack CONFIG``;
``accelerate launch --config_file $(ftrisk accelerate-config fsdp) -m ftrisk.cli attack CONFIG`` is the
same run started by hand (TRL's and lm-eval's users launch that way). Inside the training loop one
``accelerate.Accelerator`` per process (:func:`accelerator`) plays litgpt's Fabric: the loop does not
know how many processes there are. Without a launch it is a plain single-process Accelerator and the
numbers are those of the loop before accelerate.

Nothing here imports torch or accelerate at import time (the pipeline imports this module on every path).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from ftrisk.errors import FtriskError

#: packaged launch configs (src/ftrisk/data/accelerate/NAME.yaml), adapted from TRL's examples/accelerate_configs
CONFIGS = ("ddp", "fsdp", "deepspeed-zero3")
_DATA = Path(__file__).parent / "data" / "accelerate"


def config_path(name: str) -> Path:
    """The packaged config ``name`` (ddp | fsdp | deepspeed-zero3), or a user's own accelerate YAML file."""
    if name in CONFIGS:
        return _DATA / f"{name}.yaml"
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    raise FtriskError(f"--accelerate-config must be one of {', '.join(CONFIGS)} or an accelerate YAML file (got '{name}')")


def launched() -> bool:
    """True in a process started by ``accelerate launch`` / torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that writes results, checkpoints, metrics and logs."""
    return not launched() or int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def main_process_first():
    """Rank 0 runs the block first (claims or clears a folder), then the others (which read what it left)."""
    if not launched():
        yield
        return
    with accelerator().main_process_first():
        yield


def wait_for_everyone() -> None:
    if launched():
        accelerator().wait_for_everyone()


def _backend(env=os.environ) -> str:
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "deepspeed"
    if env.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "fsdp"
    return "ddp"


def _config_backend(path: Path) -> str:
    kind = str((yaml.safe_load(path.read_text()) or {}).get("distributed_type", "")).upper()
    return {"DEEPSPEED": "deepspeed", "FSDP": "fsdp"}.get(kind, "ddp")


def check(backend: str, num_processes: int) -> None:
    """One line, before anything trains, for a launch that cannot work on this machine."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if num_processes < 1:
        raise FtriskError(f"--num-processes must be >= 1 (got {num_processes})")
    if backend == "deepspeed":
        if importlib.util.find_spec("deepspeed") is None:
            raise FtriskError("the deepspeed-zero3 accelerate config needs DeepSpeed: pip install deepspeed "
                              "(CUDA GPUs only), or use --accelerate-config fsdp")
        if not gpus:
            raise FtriskError("DeepSpeed trains on CUDA GPUs only: use --accelerate-config ddp on CPU")
    if backend == "fsdp" and not gpus:
        raise FtriskError("FSDP through accelerate needs CUDA GPUs: use --accelerate-config ddp on CPU")
    if gpus and num_processes > gpus:
        raise FtriskError(f"{num_processes} processes but {gpus} CUDA GPU(s) visible: "
                          f"pass --num-processes {gpus} or fewer (one process per GPU)")


def accelerator():
    """This process's ``accelerate.Accelerator``, created once (checks the launch first)."""
    global _ACCELERATOR
    if _ACCELERATOR is None:
        if launched():
            check(_backend(), int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])))
            import torch

            if not torch.cuda.is_available():  # else each process would silently run alone (DistributedType.NO)
                os.environ["ACCELERATE_USE_CPU"] = "true"  # gloo across the CPU processes
        from accelerate import Accelerator

        # no device placement in a single process: the model stays where model.device put it;
        # the scheduler steps once per optimizer step (not once per process: the global batch is fixed)
        _ACCELERATOR = Accelerator(device_placement=launched(), step_scheduler_with_optimizer=False)
    return _ACCELERATOR


_ACCELERATOR = None


def launch_command(config: str, num_processes: int | None, argv: list[str]) -> tuple[list[str], dict]:
    """``accelerate launch`` of ``ftrisk.cli <argv>`` with ``config`` on ``num_processes`` processes (checked)."""
    import torch

    path = config_path(config)
    if num_processes is None:
        num_processes = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not num_processes:
            raise FtriskError("no CUDA GPU visible: pass --num-processes N to train on N CPU processes")
    check(_config_backend(path), num_processes)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(path),
           "--num_processes", str(num_processes), "-m", "ftrisk.cli", *argv]
    env = dict(os.environ)
    if not torch.cuda.is_available():  # DDP over gloo on CPU processes
        env["ACCELERATE_USE_CPU"] = "true"
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // num_processes)))
    return cmd, env


def run_launch(cmd: list[str], env: dict) -> int:
    print(f"ftrisk: launching accelerate launch {shlex.join(cmd[3:])}", file=sys.stderr, flush=True)
    return subprocess.run(cmd, env=env).returncode
