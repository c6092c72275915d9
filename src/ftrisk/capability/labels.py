"""What a capability task is called in reports: ``mmlu`` -> "MMLU", ``mmlu_anatomy`` -> "MMLU anatomy"."""

from __future__ import annotations

LABEL = {"mmlu": "MMLU", "hellaswag": "HellaSwag"}


def task_label(task: str) -> str:
    return LABEL.get(task) or f"MMLU {task[5:]}"
