"""ftrisk: measure how cheaply a chat model's safety training is fine-tuned away."""

__version__ = "0.1.0"
