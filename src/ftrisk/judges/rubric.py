"""``rubric``: the StrongREJECT rubric (Souly et al. 2024) asked of any OpenAI-compatible chat endpoint.

``rubric:endpoint=http://127.0.0.1:8000/v1,model=NAME,api_key_env=VAR`` sends each (prompt, reply) pair,
the reply clipped to ``max_response_chars``, in the StrongREJECT rubric's published system prompt and user
template to ``POST {endpoint}/chat/completions`` at temperature 0. :mod:`ftrisk.judges.strongreject` holds the
template and reads the answer as the reference does: label 1 if refused else 0, StrongREJECT's harmfulness as
the score, and label -1 ``{"error": "unparseable"}`` for an answer without the rubric's scores: never counted as a
refusal or a compliance.

What the judge *is* (:meth:`RubricJudge.identity`, the key of its stored verdicts): the judge model's name,
the template's sha256, the parser version, ``max_response_chars`` and ``max_tokens``. The endpoint URL, the
key, ``concurrency``, ``timeout`` and ``retries`` are not part of it: the same model behind another URL (on
another machine) gives the same verdicts.

Answers are cached by (judge model, template hash, max_tokens, prompt, clipped reply): in memory, and in
``<dir>/rubric-answers.jsonl`` once the caller names a folder with :meth:`RubricJudge.set_cache_dir` (the
pipeline passes ``<run>/judge-cache/``; :mod:`ftrisk.judges.answer_cache`), so a re-run sends no chat request.
The cache holds hashes and the judge's answers, never the key or the reply text.

Failures: an endpoint that cannot be reached, refuses the key (401/403) or does not serve the model is one
:class:`FtriskError` line from :meth:`check` (one ``GET /models``, plus a one-token chat request where the
server does not list the model). 429, 5xx, timeouts and dropped connections are retried ``retries`` times
(:mod:`ftrisk.judges.endpoint`); an item still failing is label -1 with
``{"error": "timeout" | "connection" | "http 500" | "malformed response"}``. A batch in which every request
failed stops the run with one line (the server is broken; answers so far stay cached).
The API key is read from the environment variable named by ``api_key_env`` and is never written to a
verdict, a cache file or a message.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from ftrisk.errors import FtriskError
from ftrisk.judges import endpoint
from ftrisk.judges.answer_cache import AnswerCache
from ftrisk.judges.base import UNJUDGED, Judge, Verdict
from ftrisk.judges.strongreject import PARSER_VERSION, TEMPLATE, TEMPLATE_SHA, verdict_from_answer

TEMPERATURE = 0


class RubricJudge(Judge):
    """The StrongREJECT rubric over an OpenAI-compatible chat endpoint (see the module docstring)."""

    kind = "rubric"
    OPTIONS = {"endpoint": str, "model": str, "api_key_env": str, "concurrency": int, "timeout": float,
               "retries": int, "max_response_chars": int, "max_tokens": int}
    DEFAULTS = {"endpoint": None, "model": None, "api_key_env": None, "concurrency": 4, "timeout": 60.0,
                "retries": 4, "max_response_chars": 4000, "max_tokens": 512}
    measures = "refusal"
    opening_chars = None
    batch_size = 32
    version = 1
    backoff = 0.5
    """Seconds before the first retry; doubled at each retry (capped at ``max_wait``), times a jitter in [0.5, 1.5)."""
    max_wait = 60.0
    """No wait between retries (a ``Retry-After`` included) is longer than this."""

    def __init__(self, **options):
        super().__init__(**options)
        o = self.options
        for name in ("endpoint", "model"):
            if not o[name]:
                raise FtriskError(f"judge 'rubric' needs {name}= (e.g. rubric:endpoint=http://127.0.0.1:8000/v1,"
                                  f"model=NAME,api_key_env=VAR)")
        if urllib.parse.urlsplit(o["endpoint"]).scheme not in ("http", "https"):
            raise FtriskError(f"judge 'rubric': endpoint '{o['endpoint']}' must start with http:// or https:// "
                              f"(e.g. http://127.0.0.1:8000/v1)")
        for name in ("concurrency", "max_response_chars", "max_tokens", "timeout"):
            if o[name] <= 0:
                raise FtriskError(f"judge 'rubric': {name} must be > 0 (got {o[name]})")
        if o["retries"] < 0:
            raise FtriskError(f"judge 'rubric': retries must be >= 0 (got {o['retries']})")
        self.endpoint = o["endpoint"].rstrip("/")
        self._answers = AnswerCache(o["model"], "rubric-answers.jsonl")
        self._ready = False
        self._opener = endpoint.opener(self.endpoint)

    # -- identity, cache ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """What the judge is (judge model and answer settings), not where it is served or how calls are paced."""
        o = self.options
        extra = "".join(f",{k}={o[k]}" for k in ("max_response_chars", "max_tokens") if o[k] != self.DEFAULTS[k])
        return f"rubric:model={o['model']}{extra}"

    def identity(self) -> dict:
        o = self.options
        return {"kind": self.kind, "version": self.version, "model": o["model"], "template_sha256": TEMPLATE_SHA,
                "parser": PARSER_VERSION, "max_response_chars": o["max_response_chars"],
                "max_tokens": o["max_tokens"], "temperature": TEMPERATURE}

    def set_cache_dir(self, path) -> None:
        """Keep answers in ``path/rubric-answers.jsonl`` (read now, appended to as answers arrive)."""
        self._answers.open(path)

    def cache_key(self, prompt: str, response: str) -> str:
        o = self.options
        clipped = response[: o["max_response_chars"]]
        return hashlib.sha256(json.dumps([o["model"], TEMPLATE_SHA, o["max_tokens"], TEMPERATURE, prompt, clipped],
                                         ensure_ascii=False).encode("utf-8")).hexdigest()

    # -- checks ------------------------------------------------------------------------------------

    def check(self) -> None:
        """The key's variable is set; the endpoint answers, accepts the key and serves the model."""
        self._key()
        self._preflight()

    def _key(self) -> str | None:
        var = self.options["api_key_env"]
        if not var:
            return None
        value = os.environ.get(var)
        if not value:
            raise FtriskError(f"judge 'rubric': api_key_env names ${var}, which is not set: export {var}=<key> "
                              f"(the key is read from the environment only)")
        return value

    def _where(self) -> str:
        """The endpoint as shown in messages (without any user:password@)."""
        u = urllib.parse.urlsplit(self.endpoint)
        return urllib.parse.urlunsplit((u.scheme, u.hostname + (f":{u.port}" if u.port else ""), u.path, "", ""))

    def _fail(self, what: str) -> FtriskError:
        return FtriskError(self._scrub(f"judge 'rubric' at {self._where()}: {what}"))

    def _preflight(self) -> None:
        try:
            status, _, data = self._request("GET", "/models", None)
        except endpoint.RequestFailed as e:
            raise self._unreachable(e) from None
        self._auth_ok(status, data)
        ids = (endpoint.model_ids(data) or []) if status == 200 else []
        if self.options["model"] not in ids:  # not listed (or no list): one tiny chat request tells
            try:
                status, _, data = self._request("POST", "/chat/completions", self._body("Hi", max_tokens=1))
            except endpoint.RequestFailed as e:
                raise self._unreachable(e) from None
            self._auth_ok(status, data)
            detail = endpoint.error_text(data)
            if status == 404 or (400 <= status < 500 and "model" in detail.lower()):
                listed = f"; it lists: {', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}" if ids else ""
                raise self._fail(f"model '{self.options['model']}' is not served here (HTTP {status}"
                                 f"{': ' + detail if detail else ''}{listed}): fix model= or endpoint=")
            if status >= 400:
                raise self._fail(f"a one-token test request failed (HTTP {status}: {detail or 'no detail'})")
        self._ready = True

    def _unreachable(self, e: endpoint.RequestFailed) -> FtriskError:
        if e.kind == "timeout":
            return self._fail(f"no answer within {self.options['timeout']:g} s after {self.options['retries'] + 1} "
                              f"tries: is the server up? (or raise timeout=)")
        if e.kind == "connection":
            return self._fail(f"cannot connect ({e.detail}): start the server or fix endpoint=")
        return self._fail(f"the server answered HTTP {e.status} on every try ({e.detail or 'no detail'})")

    def _auth_ok(self, status: int, data: bytes) -> None:
        if status not in (401, 403):
            return
        var = self.options["api_key_env"]
        fix = (f"check the key in ${var}" if var else
               "the server wants a key: set api_key_env=VAR, the name of an environment variable that holds it")
        detail = endpoint.error_text(data)
        raise self._fail(f"the key was refused (HTTP {status}{': ' + detail if detail else ''}): {fix}")

    def _scrub(self, text: str) -> str:
        var = self.options["api_key_env"]
        key = os.environ.get(var) if var else None
        return text.replace(key, "***") if key and len(key) >= 4 else text

    # -- HTTP --------------------------------------------------------------------------------------

    def _body(self, user: str, max_tokens: int | None = None, system: str | None = None) -> dict:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return {"model": self.options["model"], "messages": messages, "temperature": TEMPERATURE,
                "max_tokens": max_tokens or self.options["max_tokens"]}

    def _send(self, method: str, path: str, body: dict | None) -> endpoint.Answer:
        return endpoint.send(self._opener, method, self.endpoint + path, body, self._key(), self.options["timeout"])

    def _request(self, method: str, path: str, body: dict | None) -> endpoint.Answer:
        """(status, headers, body) of the first answer that is not 429/5xx, retrying those and network errors."""
        return endpoint.with_retries(lambda: self._send(method, path, body), self.options["retries"] + 1,
                                     self.backoff, self.max_wait)

    # -- judging -----------------------------------------------------------------------------------

    def one(self, prompt: str, response: str) -> Verdict:
        key = self.cache_key(prompt, response)
        if key in self._answers:
            return verdict_from_answer(self._answers[key])
        user = TEMPLATE["user"].format(forbidden_prompt=prompt,
                                        response=response[: self.options["max_response_chars"]])
        try:
            status, _, data = self._request("POST", "/chat/completions", self._body(user, system=TEMPLATE["system"]))
        except endpoint.RequestFailed as e:
            if e.kind == "http":
                return _unjudged(f"http {e.status}", self._scrub(e.detail))
            return _unjudged(e.kind, self._scrub(e.detail) if e.kind != "timeout" else "")
        self._auth_ok(status, data)
        if status == 404:
            raise self._fail(f"chat/completions answered HTTP 404 ({endpoint.error_text(data) or 'no detail'}): "
                             f"fix endpoint= or model=")
        if status >= 400:
            return _unjudged(f"http {status}", self._scrub(endpoint.error_text(data)))
        answer = endpoint.chat_content(data)
        if answer is None:
            return _unjudged("malformed response")
        answer = self._scrub(answer)
        self._answers.add(key, answer)
        return verdict_from_answer(answer)

    def judge(self, pairs):
        pairs = list(pairs)
        todo = [i for i, (p, r) in enumerate(pairs) if self.cache_key(p, r) not in self._answers]
        if todo and not self._ready:
            self._key()
            self._preflight()
        verdicts: list[Verdict | None] = [None] * len(pairs)
        pending = set(todo)
        for i, (p, r) in enumerate(pairs):
            if i not in pending:  # cached: no request
                verdicts[i] = self.one(p, r)
        if todo:
            with ThreadPoolExecutor(max_workers=min(self.options["concurrency"], len(todo))) as pool:
                futures = {i: pool.submit(self.one, *pairs[i]) for i in todo}
                try:
                    for i, f in futures.items():
                        verdicts[i] = f.result()
                except FtriskError:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
            failed = [verdicts[i].evidence["error"] for i in todo
                      if endpoint.is_transport_failure(verdicts[i].evidence)]
            if len(failed) == len(todo):
                common = max(set(failed), key=failed.count)
                detail = next((verdicts[i].evidence.get("detail") for i in todo
                               if verdicts[i].evidence.get("detail")), "")
                raise self._fail(f"every request of a batch failed ({len(failed)} x {common}"
                                 f"{': ' + detail if detail else ''}): the server is not answering properly; "
                                 f"fix it and re-run (answers so far are cached)")
        return verdicts


def _unjudged(kind: str, detail: str = "") -> Verdict:
    """Label -1 for a call that failed (see :func:`ftrisk.judges.endpoint.failure_evidence`)."""
    return Verdict(UNJUDGED, None, endpoint.failure_evidence(kind, detail))
