"""Safety training applied to a subject before it is attacked (hardening)."""
