"""Fine-tuning: data encoding, the training recipe, the fast CPU path."""
