"""The LM head of the decode loop: the greedy token of each row without writing out the ``rows x vocabulary``
logits, computed in float32 slices (:func:`head_argmax`) or, on a CPU with native bfloat16 products, screened in
bfloat16 with a proven error bound and computed in float32 only for the few candidates the bound leaves
(:class:`ScreenedHead`). Either way the same greedy token as ``argmax`` of the float32 logits.
"""

from __future__ import annotations

from ftrisk.generation.cpu import hardware
from ftrisk.generation.cpu.onednn import linear, packed_weight
from ftrisk.generation.cpu.options import DEFAULT, DecodeOptions

#: Vocabulary rows per slice of the LM head: the logits of one slice stay in cache and only its maximum is kept.
HEAD_CHUNK = 2048
#: bfloat16's unit roundoff (8 significant bits) and float32's.
_U_BF16, _U_F32 = 2.0 ** -8, 2.0 ** -24
#: The screen's error bound is multiplied by this, against rounding in the bound's own arithmetic.
SCREEN_SAFETY = 2.0
#: More candidate vocabulary rows than this (a bound too loose to pay), or none: the float32 slices instead.
SCREEN_MAX_ROWS = 4096
#: Set in the head's ``__dict__`` (or the model's, without a fast head) by
#: :func:`ftrisk.generation.cpu.caches.kernels` for its block; a screen built within the block is kept under
#: :data:`SCREEN_MARK` until it ends.
BLOCK_MARK = "_ftrisk_kernels"
SCREEN_MARK = "_ftrisk_screen"


def fast_parts(model):
    """(decoder body, LM head) when the model's logits are exactly ``lm_head(body(...).last_hidden_state)``; else None
    (an adapter wrapper, a head that is not one linear layer, logits scaled or soft-capped after the head)."""
    import torch

    body = getattr(model, "model", None)
    head = getattr(model, "lm_head", None)
    c = getattr(model.config, "text_config", None) or model.config
    if (type(model).__name__.endswith("ForCausalLM") and isinstance(body, torch.nn.Module)
            and type(head) is torch.nn.Linear and not getattr(model, "peft_config", None)
            and all(getattr(c, a, None) in (None, 1, 1.0)
                    for a in ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale"))):
        return body, head
    return None


def head_argmax(h, weight, bias=None, chunk: int = HEAD_CHUNK):
    """``argmax(h @ weight.T + bias)`` per row, computed over vocabulary slices with a running maximum (each logit is
    the same dot product; ties keep the lowest id, as ``argmax`` does)."""
    import torch

    best = idx = None
    for i in range(0, weight.shape[0], chunk):
        logits = torch.nn.functional.linear(h, weight[i:i + chunk], None if bias is None else bias[i:i + chunk])
        m, a = logits.max(-1)
        if best is None:
            best, idx = m, a
        else:
            better = m > best  # strict: on a tie the earlier slice (lower id) stays, as argmax does
            best, idx = torch.where(better, m, best), torch.where(better, a + i, idx)
    return idx


def screen_applies(head, *, options: DecodeOptions = DEFAULT) -> bool:
    """The bfloat16 screen is used for a float32 LM head without bias on a CPU with native bfloat16 products, with
    ``options.screen_head`` on."""
    import torch

    return (options.screen_head and head is not None and head.bias is None and head.weight.device.type == "cpu"
            and head.weight.dtype == torch.float32 and hardware.fast_bf16_cpu())


def screened_head(head, *, options: DecodeOptions = DEFAULT) -> "ScreenedHead":
    """``head``'s :class:`ScreenedHead`: within a :func:`ftrisk.generation.cpu.caches.kernels` block built once and
    kept on the module until the block ends (at every batch it would cost seconds per run), and after it only by a
    :class:`ftrisk.generation.cpu.caches.KernelCache`, which checks the weights' bytes at its next block (a weight
    changed in place through ``.data``, as PEFT's merge does, bumps no version); outside a block, built for the
    caller alone."""
    if head.__dict__.get(BLOCK_MARK) is None:
        return ScreenedHead(head.weight, options=options)
    if head.__dict__.get(SCREEN_MARK) is None:
        head.__dict__[SCREEN_MARK] = ScreenedHead(head.weight, options=options)
    return head.__dict__[SCREEN_MARK]


class ScreenedHead:
    """The exact float32 greedy token of ``h @ weight.T``, found by screening the vocabulary in bfloat16.

    Why: a float32 LM head streams the whole vocabulary's weights at every step; in bfloat16 it reads half the bytes
    and multiplies natively (AVX512-BF16, AMX). Not an approximation: the bfloat16 logits ``a_j`` differ from the
    float32 ones ``l_j`` by at most

        |l_j - a_j| <= E + u' |a_j|,   E = |h - h16| max|w_j| + |h16| (max|w_j - w16_j| + d u32 max|w16_j|)

    (Cauchy-Schwarz on ``h.w - h16.w16 = (h - h16).w + h16.(w - w16)``, float32 accumulation over d products; the
    bfloat16 rounding of the output, ``u' = u16 / (1 - u16)``). With ``top = max(a)`` and ``M = E + u' |top|``
    (times :data:`SCREEN_SAFETY`), the greedy token ``j*`` has ``a_j* >= T = min(top - 2M, (top - 2M) / (1 - u'))``:
    its ``l_j*`` is at least the float32 logit of the bfloat16 maximum, so ``a_j* >= top - 2E - u'|top| - u'|a_j*|``;
    if ``a_j* >= 0`` then ``|a_j*| <= top`` (the first term of the min), else solving for ``a_j*`` gives the second.
    Only the candidates at or above ``T`` get float32 logits, and the largest wins (the lowest id on a tie, as
    ``argmax``). The float32 logits' own summation error (at most ``d u32 |h| max|w_j|``, which ``E`` exceeds) is
    covered by the safety factor. Which candidates there are changes only the work, not the token: each candidate's
    float32 logit is the same dot product as in the full head (up to the order of float additions, as with
    :func:`head_argmax`'s slices). The output term uses ``|top|``, not ``max |a_j|`` over the row: no extra pass
    over the logits, and no wider margin where the most negative logit outweighs the top one."""

    def __init__(self, weight, *, options: DecodeOptions = DEFAULT):
        import torch

        w = weight.detach()
        self.weight, self.w16 = w, packed_weight(w.to(torch.bfloat16), options=options)
        w16 = w.to(torch.bfloat16).float()
        self.w_norm = float(w.norm(dim=1).max())
        self.dw_norm = float((w - w16).norm(dim=1).max())
        d = w.shape[1]
        self.acc = d * _U_F32 / (1 - d * _U_F32) * float(w16.norm(dim=1).max())
        self.fallbacks = 0

    def candidates(self, h):
        """(bfloat16 logits, per-row candidate mask, per-row ``M``, safety factor included: the bound on ``|l_j -
        a_j|`` for every ``j`` with ``|a_j| <= |top|``).

        The logits stay in bfloat16 (each converts to float32 exactly): a float32 copy of the ``rows x vocabulary``
        logits, and ``abs`` over it, would take longer than the bfloat16 product itself. The threshold is compared in
        bfloat16 too, rounded to nearest, which admits the same bfloat16 logits as the float32 threshold or more,
        never fewer (rounded up, no bfloat16 lies between the two; rounded down, more pass): a bfloat16 tensor
        compared with a float32 one is first copied whole to float32, fresh pages and all."""
        import torch

        h16 = h.to(torch.bfloat16)
        a = linear(h16, self.w16)
        hf = h16.float()
        nh, dh = hf.norm(dim=1), (h - hf).norm(dim=1)
        top = a.amax(dim=1).float()
        u = _U_BF16 / (1 - _U_BF16)
        margin = SCREEN_SAFETY * (dh * self.w_norm + nh * (self.dw_norm + self.acc) + u * top.abs())
        x = top - 2 * margin
        threshold = torch.minimum(x, x / (1 - u))
        return a, a >= threshold.to(torch.bfloat16)[:, None], margin

    def __call__(self, h):
        import torch

        _, cand, _ = self.candidates(h)
        # a column is a candidate if it is one for any row: amax over the rows of the mask's bytes (faster than
        # ``any(dim=0)``)
        cols = cand.view(torch.uint8).amax(dim=0).nonzero().squeeze(1)
        if not 0 < cols.numel() <= SCREEN_MAX_ROWS:  # none: a NaN in h (argmax of the float32 logits decides)
            self.fallbacks += 1
            return head_argmax(h, self.weight)
        # one product over every row's candidates: a column that is a candidate only for other rows cannot win a row
        # (by the bound its float32 logit is below that row's maximum), so no per-row mask is needed; index_select
        # copies whole rows, faster than ``weight[cols]``
        return cols[torch.nn.functional.linear(h, torch.index_select(self.weight, 0, cols)).argmax(dim=1)]
