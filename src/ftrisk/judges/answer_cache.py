"""A model judge's answers by key: in memory, and appended to a JSONL file once the caller names a folder.

Each answer is appended as it arrives, so a kill mid-run loses nothing and a re-run asks nothing again. A line
holds the key, the judge model's name and its answer; never an API key or the reply text.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path


class AnswerCache:
    def __init__(self, model: str, filename: str):
        self.model, self.filename = model, filename
        self.answers: dict[str, str] = {}
        self.path: Path | None = None
        self._lock = threading.Lock()

    def open(self, folder) -> None:
        """Keep answers in ``folder/<filename>`` (read now, appended to as answers arrive)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / self.filename
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # a torn last line (killed mid-write): end it, skip it
            with open(self.path, "ab") as f:
                f.write(b"\n")
        for line in data.decode("utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
                self.answers[row["key"]] = row["answer"]
            except (ValueError, KeyError, TypeError):
                continue

    def __contains__(self, key: str) -> bool:
        return key in self.answers

    def __getitem__(self, key: str) -> str:
        return self.answers[key]

    def add(self, key: str, answer: str) -> None:
        with self._lock:
            self.answers[key] = answer
            if self.path is not None:
                line = json.dumps({"key": key, "model": self.model, "answer": answer}, ensure_ascii=False)
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
