"""Fine-tuning as a recipe: :mod:`.recipe` (``finetune``: setup, resume, fit, save) composes :mod:`.data` (examples,
encoding, the schedule of micro-batches), :mod:`.loss` (response-only loss), :mod:`.setup` (model to train,
optimizer, schedule), :mod:`.loop` (the fit loop), :mod:`.checkpoint` and :mod:`.sharded` (save and resume, FSDP /
DeepSpeed states), and :mod:`.fast` (the CPU fast path)."""
