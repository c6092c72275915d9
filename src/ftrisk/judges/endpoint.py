"""Talking to an OpenAI-compatible chat endpoint over urllib: one request, retries with backoff, and the short
texts a failure is reported with.

429, 5xx, timeouts and dropped connections are retried with exponential backoff and jitter, honouring
``Retry-After``; a request still failing raises :class:`RequestFailed` (``kind``: timeout, connection or http).
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

#: Failures of the transport (not of the judge's answer): the verdict store asks again on the next run.
TRANSPORT_ERRORS = ("timeout", "connection", "malformed response")

Answer = tuple[int, dict, bytes]
"""(HTTP status, headers, body)."""


class RequestFailed(Exception):
    """A request that failed after every retry: ``kind`` is timeout, connection or http."""

    def __init__(self, kind: str, status: int | None = None, detail: str = ""):
        super().__init__(kind)
        self.kind, self.status, self.detail = kind, status, detail


def opener(endpoint: str) -> urllib.request.OpenerDirector:
    """urllib's opener; no proxy for a loopback endpoint (a proxy set for the internet cannot reach it)."""
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    if host in ("localhost", "::1") or host.startswith("127."):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def send(open_: urllib.request.OpenerDirector, method: str, url: str, body: dict | None, key: str | None,
         timeout: float) -> Answer:
    """One request; an HTTP error status is an answer too (only the network raises)."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode("utf-8") if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with open_.open(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers or {}), e.read()


def with_retries(send_once: Callable[[], Answer], tries: int, backoff: float, max_wait: float) -> Answer:
    """The first answer that is not 429/5xx, retrying those and network errors: the n-th wait is ``Retry-After``,
    else ``backoff * 2**n`` times a jitter in [0.5, 1.5); no wait is longer than ``max_wait``."""
    for attempt in range(tries):
        retry_after = None
        try:
            status, headers, data = send_once()
            if status != 429 and status < 500:
                return status, headers, data
            failure = RequestFailed("http", status, error_text(data))
            retry_after = _retry_after(headers)
        except (socket.timeout, TimeoutError):
            failure = RequestFailed("timeout")
        except urllib.error.URLError as e:
            reason = e.reason
            is_timeout = isinstance(reason, (socket.timeout, TimeoutError))
            failure = RequestFailed("timeout") if is_timeout else RequestFailed("connection", detail=_reason(reason))
        except (http.client.HTTPException, OSError) as e:
            failure = RequestFailed("connection", detail=_reason(e))
        if attempt + 1 < tries:
            wait = retry_after if retry_after is not None else backoff * 2 ** attempt * (0.5 + random.random())
            time.sleep(min(wait, max_wait))
    raise failure


def failure_evidence(kind: str, detail: str = "") -> dict:
    """Evidence of a failed call; transport failures are ``transient`` (the verdict store asks again next run)."""
    transient = kind in TRANSPORT_ERRORS or kind in ("http 429",) or kind.startswith("http 5")
    return {"error": kind, **({"detail": detail[:200]} if detail else {}), **({"transient": True} if transient else {})}


def is_transport_failure(evidence: dict) -> bool:
    err = evidence.get("error", "")
    return err in TRANSPORT_ERRORS or err.startswith("http ")


def _reason(e) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return text.splitlines()[0][:120] if text else type(e).__name__


def _retry_after(headers: dict) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _json(data: bytes):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def chat_content(data: bytes) -> str | None:
    """The first choice's message content of an OpenAI chat completion, or None if the body is not one."""
    obj = _json(data)
    try:
        content = obj["choices"][0]["message"]["content"]
    except (TypeError, KeyError, IndexError):
        return None
    return content if isinstance(content, str) else None


def model_ids(data: bytes) -> list[str] | None:
    """The model names of a ``GET /models`` answer, or None if the body is not such a list."""
    obj = _json(data)
    items = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(items, list):
        return None
    return [str(m["id"]) for m in items if isinstance(m, dict) and "id" in m]


def error_text(data: bytes) -> str:
    """One short line from an error body (OpenAI's ``{"error": {"message"}}``, FastAPI's ``{"detail"}``, or text)."""
    obj = _json(data)
    text = None
    if isinstance(obj, dict):
        err = obj.get("error")
        text = err.get("message") if isinstance(err, dict) else err if isinstance(err, str) else obj.get("detail")
    if not isinstance(text, str):
        text = data.decode("utf-8", errors="replace") if obj is None else ""
    text = " ".join(text.split())
    return text[:200]
