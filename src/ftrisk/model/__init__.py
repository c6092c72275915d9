"""The model under test: loading (HF, embedded GGUF), chat templates, the Subject."""
