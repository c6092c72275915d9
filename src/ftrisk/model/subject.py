"""The model under test as one value: base weights, optional PEFT adapter, and how it is run.

Every consumer (generation backends, training, capability, model-based judges) takes a
:class:`Subject` and loads it through :meth:`Subject.load`, the one loader, so dtype, device,
quantization, chat template and system prompt are the same everywhere. The weights'
fingerprint is computed once, when the subject is made. :meth:`identity` is what a stage key
hashes; :meth:`to_json` stores paths relative to the run folder (resolved again on read).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from ftrisk.model import loading as models


def template_sha(template: str | None) -> str | None:
    return hashlib.sha256(template.encode()).hexdigest()[:16] if template else None


def _dir_template(path: Path | str) -> str | None:
    """The chat template a model folder ships (``chat_template.jinja`` or tokenizer_config.json)."""
    p = Path(path)
    if (p / "chat_template.jinja").is_file():
        return (p / "chat_template.jinja").read_text(encoding="utf-8")
    try:
        return json.loads((p / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template")
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Subject:
    spec: str
    """What the user named (HF dir, .gguf, embedded:NAME, hub id) or the folder a stage produced."""
    path: str
    """Resolved local folder (or a hub id)."""
    fingerprint: str
    adapter: str | None = None
    adapter_fingerprint: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    """Resolved device (never "auto")."""
    quantize: str | None = None
    chat_template: str | None = None
    """Override of the tokenizer's template (None: the folder's own)."""
    system_prompt: str | None = None
    trust_remote_code: bool = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, mcfg, spec: str | None = None) -> "Subject":
        """From a :class:`ftrisk.config.schema.ModelConfig`, or anything with its fields (``spec`` replaces
        ``mcfg.spec``, e.g. a hardened folder)."""
        spec = spec or mcfg.spec
        path = models.resolve(spec)
        return cls(spec=str(spec), path=str(path), fingerprint=models.fingerprint(path), dtype=mcfg.dtype,
                   device=models.pick_device(mcfg.device), quantize=mcfg.quantize, chat_template=mcfg.chat_template,
                   system_prompt=mcfg.system_prompt, trust_remote_code=mcfg.trust_remote_code)

    def with_adapter(self, adapter: str | Path | None) -> "Subject":
        if adapter is None:
            return dataclasses.replace(self, adapter=None, adapter_fingerprint=None)
        a = models.check_adapter(self.path, adapter)
        return dataclasses.replace(self, adapter=str(a), adapter_fingerprint=models.adapter_fingerprint(a))

    def with_weights(self, path: str | Path) -> "Subject":
        """The same settings on other full weights (a hardened or fully fine-tuned folder); no adapter."""
        p = models.resolve(str(path))
        return dataclasses.replace(self, spec=str(path), path=str(p), fingerprint=models.fingerprint(p),
                                   adapter=None, adapter_fingerprint=None)

    # ------------------------------------------------------------------ identity
    @property
    def template_sha(self) -> str | None:
        return template_sha(self.chat_template or _dir_template(self.path))

    def identity(self) -> dict:
        """Everything about the subject that changes what it generates or scores."""
        return {"weights": self.fingerprint, "adapter": self.adapter_fingerprint, "dtype": self.dtype,
                "device": self.device.split(":")[0], "quantize": self.quantize, "chat_template": self.template_sha,
                "system_prompt": self.system_prompt, "trust_remote_code": self.trust_remote_code}

    # ------------------------------------------------------------------ loading
    def load(self, trainable: bool = False):
        """(model, tokenizer), adapter applied (merged for inference on unquantized weights)."""
        return models.load_subject(self, trainable=trainable)

    def load_tokenizer(self):
        return models.load_tokenizer(self.path, self.chat_template, self.trust_remote_code)

    # ------------------------------------------------------------------ storage
    def to_json(self, root: Path | None = None) -> dict:
        d = dataclasses.asdict(self)
        if root is not None:
            for k in ("path", "adapter"):
                d[k] = relative_to(d[k], root)
        return d

    @classmethod
    def from_json(cls, d: dict, root: Path | None = None) -> "Subject":
        d = dict(d)
        if root is not None:
            for k in ("path", "adapter"):
                d[k] = resolve_from(d[k], root)
        return cls(**d)


def load_spec(spec: str, *, dtype: str = "float32", device: str = "auto", quantize: str | None = None,
              chat_template: str | None = None, system_prompt: str | None = None, trust_remote_code: bool = False):
    """(model, tokenizer) of a model spec; the settings default as ``ModelConfig``'s do (benchmarks, tests)."""
    settings = dict(dtype=dtype, device=device, quantize=quantize, chat_template=chat_template,
                    system_prompt=system_prompt, trust_remote_code=trust_remote_code)
    return Subject.from_config(SimpleNamespace(spec=str(spec), **settings)).load()


def relative_to(path: str | None, root: Path) -> str | None:
    """``path`` relative to ``root`` when it lies inside it (a run folder that moves keeps working)."""
    if path is None:
        return None
    p, r = Path(path).absolute(), Path(root).absolute()
    try:
        return os.path.relpath(p, r) if p.is_relative_to(r) else str(p)
    except ValueError:
        return str(p)


def resolve_from(path: str | None, root: Path) -> str | None:
    if path is None or Path(path).is_absolute() or not Path(root, path).exists():
        return path  # absolute, a hub id, or gone
    return str(Path(root, path))
