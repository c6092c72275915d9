"""Memory, devices, hours and dollars of an attack before it runs."""
