"""Generation backends: a Subject and items in, completion rows out (``generation.backend``).

:mod:`.base` is the protocol; ``hf`` (transformers ``generate``) is always available, other engines
are optional extras imported lazily through :mod:`ftrisk.registry`. Resumability (skip finished ids,
torn-line repair) wraps every backend in :func:`ftrisk.generation.resumable.generate`.
"""

from ftrisk.generation.base import Backend, open_backend

__all__ = ["Backend", "open_backend"]
