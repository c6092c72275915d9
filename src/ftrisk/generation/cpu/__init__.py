"""The ``hf`` backend's decode loop and its CPU kernels, lowest first:

- ``options``: :class:`DecodeOptions`, the switches of everything below (passed in, recorded);
- ``hardware``: what this CPU and torch offer (vendor, bfloat16, oneDNN, MKL);
- ``onednn``, ``mkl``: a linear product with the weight packed once; ``linear``: the model's linears swapped onto one;
- ``key_blocks``, ``weighted_sums``, ``attention``: one-query attention over the KV cache;
- ``kv_layer``: the cache layer written in place; ``resources``: memory budget and CPU threads;
- ``head``: the LM head's greedy token (bfloat16 screen); ``step``: a lean Llama decode step;
- ``caches``: what is built once and kept (``kernels()``, ``KernelCache``); ``next_token``: one forward pass;
- ``prefill``, ``loop``: the greedy loop (``loop.greedy``).

torch and transformers are imported inside functions: the command line loads these modules at start-up (the planner
reads the decode loop's constants, ``ftrisk plan`` the kernels' hardware checks) and starts without loading torch.
"""
