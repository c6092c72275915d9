"""Weights and optimizer state when FSDP or DeepSpeed shard them across processes: gathered whole on rank 0 to save,
split again to resume. Each function takes accelerate's Accelerator and the prepared (wrapped) ResponseLoss; every
process must call the gathering ones, as they are collectives.

torch.distributed.checkpoint and deepspeed are imported where they are used: only FSDP or DeepSpeed runs need
them, and deepspeed is an optional install.
"""

from __future__ import annotations

from ftrisk.errors import FtriskError


def gathered_state(acc, wrapped, lora: bool) -> dict | None:
    """The trained weights gathered on rank 0 when they are sharded (FSDP, DeepSpeed ZeRO-3), keyed as the
    unwrapped model's state dict (LoRA: the adapter only); None when each process holds them whole."""
    kind = acc.distributed_type.name
    if kind == "FSDP":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        sd = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True,
                                                                    ignore_frozen_params=lora))
    elif kind == "DEEPSPEED" and acc.state.deepspeed_plugin.zero_stage == 3:
        if not lora:
            sd = acc.get_state_dict(wrapped)
        else:
            import deepspeed

            trainable = [p for p in wrapped.parameters() if p.requires_grad]
            with deepspeed.zero.GatheredParameters(trainable):  # the adapter only, never the frozen base
                module = acc.unwrap_model(wrapped)
                sd = {n: p.detach().cpu().clone() for n, p in module.named_parameters() if p.requires_grad}
    else:
        return None
    return {k.removeprefix("model."): v for k, v in sd.items()}


def optimizer_state(acc, wrapped, opt) -> dict:
    """The optimizer state to save, whole (gathered on rank 0 under FSDP)."""
    if acc.distributed_type.name == "DEEPSPEED":  # partitioned by the engine: not resumable (see load_optimizer)
        return {}
    if acc.distributed_type.name == "FSDP":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(wrapped, opt.optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return opt.state_dict()


def load_optimizer(acc, wrapped, opt, state: dict) -> None:
    """Restore the optimizer from the whole state :func:`optimizer_state` saved (split across processes under FSDP)."""
    if acc.distributed_type.name == "FSDP":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(wrapped, opt.optimizer, state, options=StateDictOptions(full_state_dict=True))
    elif acc.distributed_type.name == "DEEPSPEED":
        raise FtriskError("resuming a DeepSpeed run from a checkpoint is not supported: "
                          "delete the checkpoint-* folders to restart, or resume with --accelerate-config ddp/fsdp")
    else:
        opt.load_state_dict(state)
