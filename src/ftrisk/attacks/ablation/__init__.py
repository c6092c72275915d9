"""Refusal-direction ablation (``attack.method: ablation``): :mod:`.attack` runs it; :mod:`.directions` (mean
activations), :mod:`.refusal` (the subject's refusal tokens), :mod:`.select` (choosing the direction,
:func:`first_token_kl`), :mod:`.edit` (the weights), :mod:`.arch` (which architectures it can edit), :mod:`.forward`
(batches and hooks), :mod:`.data` (the prompts)."""

from ftrisk.attacks.ablation.attack import AblationAttack
from ftrisk.attacks.ablation.select import first_token_kl

__all__ = ["AblationAttack", "first_token_kl"]
