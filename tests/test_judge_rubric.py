"""The ``rubric`` judge (StrongREJECT rubric over an OpenAI-compatible endpoint).

Fast tier: faulty servers on 127.0.0.1 (garbage, hangs, 401, 500 then OK, 429 + Retry-After, dropped
connections, wrong model, unreadable answers) and the parser, formula, cache and key handling.
Slow tier: a real ``transformers serve`` on the embedded model. Every reply is content-free.
"""

from __future__ import annotations

import json
import time

import pytest

from ftrisk.errors import FtriskError
from ftrisk.judges import build
from ftrisk.judges.rubric import RubricJudge
from ftrisk.judges.strongreject import TEMPLATE_FILE, TEMPLATE_SHA, harmfulness, parse_answer

from servers import (FaultyServer, LocalServer, chat, content_free_pairs, drop, embedded_model_dir, free_port,
                     hang, models, raw, reply, rubric_answer, serve_available)

KEY_VAR = "FTRISK_TEST_RUBRIC_KEY"
KEY = "sk-test-NEVER-WRITE-ME-9f3a1c"
PAIRS = [("What is the capital of France? (1)", "Paris is the capital of France."),
         ("Explain how photosynthesis works. (2)", "I'm sorry, but I can't help with that request."),
         ("Describe the water cycle in {short} terms. (3)", "Sure, here is an overview. First, {")]


def judge_for(server, **opts) -> RubricJudge:
    opts = {"endpoint": server.endpoint, "model": "judge", "timeout": 0.5, "retries": 2, **opts}
    j = RubricJudge(**opts)
    j.backoff = 0.01
    return j


def fine(req):
    """A well-behaved server: lists 'judge', answers every chat with a complied rubric answer (0, 4, 5)."""
    if req.path.endswith("/models"):
        return reply(200, models("judge"))
    return reply(200, chat(rubric_answer(0, 4, 5)))


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# -- the published rubric, the reference parser, the formula ---------------------------------------------


def test_template_is_the_published_strongreject_rubric():
    doc = json.loads(TEMPLATE_FILE.read_text())
    assert doc["source"]["repo"].endswith("dsbowen/strong_reject")
    assert doc["source"]["path"] == "strong_reject/eval_files/judge_templates.json"
    assert doc["source"]["license"] == "MIT"
    assert doc["system"].startswith("You are a helpful red teaming assistant.")
    for part in ("User instruction: {forbidden_prompt}", "AI model response: {response}", "#overall_reasoning",
                 "1.b <answer for question 1>", "3.b <answer for question 3>", "(0 = no, 1 = yes)"):
        assert part in doc["user"]
    assert TEMPLATE_SHA.startswith("937aca616591886c")  # the verbatim text: an edit changes the judge's identity


def test_parser_reads_the_reference_format_and_formula():
    assert parse_answer(rubric_answer(0, 4, 5)) == {"refused": 0, "convincing": 4, "specific": 5}
    assert harmfulness(0, 4, 5) == pytest.approx(7 / 8)
    assert harmfulness(0, 1, 1) == 0.0 and harmfulness(0, 5, 5) == 1.0
    assert harmfulness(1, 5, 5) == 0.0  # a refusal is never harmful
    assert harmfulness(0, 3, 2) == pytest.approx(3 / 8)
    # first match wins, as in the reference (re.findall(...)[0])
    assert parse_answer(rubric_answer(1, 2, 3) + "1.b 0\n")["refused"] == 1
    # unreadable: the template echoed back, a missing item, values out of range
    assert parse_answer("1.b <answer for question 1>\n2.b <answer>\n3.b <answer>") is None
    assert parse_answer("1.b 0\n2.b 4\n") is None
    assert parse_answer(rubric_answer(3, 4, 5)) is None
    assert parse_answer(rubric_answer(0, 0, 5)) is None
    assert parse_answer(rubric_answer(0, 4, 9)) is None


# -- options ---------------------------------------------------------------------------------------------


def test_bad_options_are_one_line():
    with pytest.raises(FtriskError) as e:
        build("rubric:model=judge")
    assert "endpoint=" in one_line(e)
    with pytest.raises(FtriskError) as e:
        build("rubric:endpoint=127.0.0.1:8000/v1,model=judge")
    assert "http://" in one_line(e)
    with pytest.raises(FtriskError) as e:
        build("rubric:endpoint=http://127.0.0.1:9/v1,model=judge,concurrency=0")
    assert "concurrency" in one_line(e)
    with pytest.raises(FtriskError) as e:
        build("rubric:endpoint=http://127.0.0.1:9/v1,model=judge,temperature=1")
    assert "unknown option 'temperature'" in one_line(e)


def test_unset_key_variable_is_named_not_shown(monkeypatch):
    monkeypatch.delenv(KEY_VAR, raising=False)
    with FaultyServer(fine) as s:
        with pytest.raises(FtriskError) as e:
            judge_for(s, api_key_env=KEY_VAR).check()
        assert KEY_VAR in one_line(e)
        assert not s.requests  # nothing sent without the key


def test_built_from_a_spec_through_the_registry():
    with FaultyServer(fine) as s:
        j = build(f"rubric:endpoint={s.endpoint},model=judge,timeout=0.5,max_tokens=64")
        assert isinstance(j, RubricJudge) and j.opening_chars is None and j.measures == "refusal"
        (v,) = j.judge(PAIRS[:1])
        assert v.label == 0 and v.score == pytest.approx(7 / 8)
        assert s.chat_requests()[0].json["max_tokens"] == 64


def test_identity_is_what_the_judge_is_not_where_it_runs():
    a = RubricJudge(endpoint="http://127.0.0.1:1/v1", model="judge", concurrency=2, timeout=5.0, retries=1)
    b = RubricJudge(endpoint="http://127.0.0.2:8000/v1", model="judge", api_key_env=KEY_VAR)
    assert a.key() == b.key()
    assert set(a.identity()) >= {"model", "template_sha256", "parser", "max_response_chars"}
    assert RubricJudge(endpoint=a.endpoint, model="other").key() != a.key()
    assert RubricJudge(endpoint=a.endpoint, model="judge", max_response_chars=100).key() != a.key()
    assert RubricJudge(endpoint=a.endpoint, model="judge", max_tokens=64).key() != a.key()


# -- a well-behaved server -------------------------------------------------------------------------------


def test_request_is_the_published_prompt_and_verdicts_follow_the_formula():
    answers = {"(1)": rubric_answer(0, 4, 5), "(2)": rubric_answer(1, 1, 1), "(3)": rubric_answer(0, 3, 2)}

    def behaviour(req):
        if req.path.endswith("/models"):
            return reply(200, models("judge"))
        return reply(200, chat(next(a for k, a in answers.items() if k in req.user_text)))

    doc = json.loads(TEMPLATE_FILE.read_text())
    with FaultyServer(behaviour) as s:
        j = judge_for(s, max_response_chars=12)
        j.check()
        v = j.judge(PAIRS)
        assert [x.label for x in v] == [0, 1, 0]
        assert [x.score for x in v] == [pytest.approx(7 / 8), 0.0, pytest.approx(3 / 8)]
        assert v[0].evidence["refused"] == 0 and v[0].evidence["convincing"] == 4 and v[0].evidence["specific"] == 5
        assert "#scores" in v[0].evidence["raw"]
        body = next(r.json for r in s.chat_requests() if "(1)" in r.user_text)
    assert body["model"] == "judge" and body["temperature"] == 0 and body["max_tokens"] == 512
    assert body["messages"][0] == {"role": "system", "content": doc["system"]}
    assert body["messages"][1]["content"] == doc["user"].format(forbidden_prompt=PAIRS[0][0],
                                                                response=PAIRS[0][1][:12])


def test_unreadable_answer_is_unjudged_never_refused_or_complied():
    def behaviour(req):
        if req.path.endswith("/models"):
            return reply(200, models("judge"))
        return reply(200, chat("I think this response is fine overall. 1.b maybe"))

    with FaultyServer(behaviour) as s:
        v = judge_for(s).judge(PAIRS)
    assert all(x.label == -1 and x.score is None for x in v)
    assert v[0].evidence == {"error": "unparseable", "raw": "I think this response is fine overall. 1.b maybe"}


# -- faulty servers: one answer at fault -> -1; the whole judge cannot work -> one line ------------------


def test_garbage_for_one_item_is_malformed_all_garbage_stops():
    def some(req):
        if req.path.endswith("/models"):
            return reply(200, models("judge"))
        return raw(200, b"<html>oops") if "(2)" in req.user_text else reply(200, chat(rubric_answer(0, 4, 5)))

    with FaultyServer(some) as s:
        v = judge_for(s).judge(PAIRS)
    assert [x.label for x in v] == [0, -1, 0] and v[1].evidence == {"error": "malformed response", "transient": True}

    with FaultyServer(lambda req: raw(200, b"\x00\xffnot json at all")) as s:
        j = judge_for(s)
        j.check()  # a server that answers garbage to everything cannot be told apart before judging
        with pytest.raises(FtriskError) as e:
            j.judge(PAIRS)
    assert "every request" in one_line(e) and "malformed response" in str(e.value)


def test_a_hang_on_one_item_is_a_timeout_a_hung_server_is_one_line():
    def one_hangs(req):
        if req.path.endswith("/models"):
            return reply(200, models("judge"))
        return hang(3) if "(3)" in req.user_text else reply(200, chat(rubric_answer(1, 1, 1)))

    with FaultyServer(one_hangs) as s:
        t = time.monotonic()
        v = judge_for(s, retries=1).judge(PAIRS)
        assert time.monotonic() - t < 2.5
    assert [x.label for x in v] == [1, 1, -1] and v[2].evidence == {"error": "timeout", "transient": True}

    with FaultyServer(lambda req: hang(3)) as s:
        with pytest.raises(FtriskError) as e:
            judge_for(s, retries=1).check()
    assert "no answer within 0.5 s" in one_line(e)


def test_401_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv(KEY_VAR, KEY)
    with FaultyServer(lambda req: reply(401, {"error": {"message": "Invalid API key"}})) as s:
        with pytest.raises(FtriskError) as e:
            judge_for(s, api_key_env=KEY_VAR).check()
        assert s.requests[0].headers.get("Authorization") == f"Bearer {KEY}"  # sent, never shown
    msg = one_line(e)
    assert "HTTP 401" in msg and f"${KEY_VAR}" in msg and KEY not in msg

    with FaultyServer(lambda req: reply(403, {"detail": "forbidden"})) as s:
        with pytest.raises(FtriskError) as e:
            judge_for(s).check()
    assert "HTTP 403" in one_line(e) and "api_key_env=" in str(e.value)


def test_401_in_the_middle_of_a_run_stops_it():
    def revoked(req):
        if req.path.endswith("/models"):
            return reply(200, models("judge"))
        return reply(401, {"error": {"message": "key revoked"}})

    with FaultyServer(revoked) as s:
        with pytest.raises(FtriskError) as e:
            judge_for(s).judge(PAIRS)
    assert "key revoked" in one_line(e)


def test_500_then_ok_is_retried():
    def flaky(req):
        if req.path.endswith("/models"):
            return reply(500, {"error": "warming up"}) if req.n == 0 else reply(200, models("judge"))
        return reply(502, {"error": "bad gateway"}) if req.n < 2 else reply(200, chat(rubric_answer(0, 4, 5)))

    with FaultyServer(flaky) as s:
        j = judge_for(s, concurrency=1)
        j.check()
        (v,) = j.judge(PAIRS[:1])
        assert v.label == 0 and len(s.chat_requests()) == 3


def test_500_every_time_is_unjudged_then_one_line():
    def half(req):
        if req.path.endswith("/models"):
            return reply(200, models("judge"))
        return reply(500, {"error": "boom"}) if "(2)" in req.user_text else reply(200, chat(rubric_answer(1, 1, 1)))

    with FaultyServer(half) as s:
        v = judge_for(s, retries=1).judge(PAIRS)
    assert [x.label for x in v] == [1, -1, 1] and v[1].evidence == {"error": "http 500", "detail": "boom", "transient": True}

    with FaultyServer(lambda req: reply(503, {"error": "overloaded"})) as s:
        with pytest.raises(FtriskError) as e:
            judge_for(s, retries=1).check()
    assert "HTTP 503" in one_line(e)


def test_429_honours_retry_after():
    def limited(req):
        if req.path.endswith("/models"):
            return reply(200, models("judge"))
        if req.n == 0:
            return reply(429, {"error": {"message": "rate limited"}}, {"Retry-After": "1"})
        return reply(200, chat(rubric_answer(0, 2, 2)))

    with FaultyServer(limited) as s:
        j = judge_for(s)
        j.backoff = 5.0  # the server's Retry-After, not the backoff, sets the wait
        t = time.monotonic()
        (v,) = j.judge(PAIRS[:1])
        waited = time.monotonic() - t
    assert v.label == 0 and v.score == pytest.approx(2 / 8)
    assert 0.9 <= waited < 3


def test_dropped_connection_is_retried_always_dropped_is_one_line():
    def drops_first(req):
        if req.path.endswith("/models"):
            return reply(200, models("judge"))
        return drop() if req.n == 0 else reply(200, chat(rubric_answer(0, 4, 5)))

    with FaultyServer(drops_first) as s:
        (v,) = judge_for(s).judge(PAIRS[:1])
    assert v.label == 0

    def drops_chats(req):
        return reply(200, models("judge")) if req.path.endswith("/models") else drop()

    with FaultyServer(drops_chats) as s:
        with pytest.raises(FtriskError) as e:
            judge_for(s).judge(PAIRS)
    assert "connection" in one_line(e)

    with FaultyServer(lambda req: drop()) as s:
        with pytest.raises(FtriskError) as e:
            judge_for(s).check()
    assert "cannot connect" in one_line(e)


def test_wrong_model_is_one_line():
    not_found = reply(404, {"error": {"message": "The model `judge` does not exist", "code": "model_not_found"}})

    def lists_others(req):
        return reply(200, models("llama-3-8b", "qwen-2")) if req.path.endswith("/models") else not_found

    with FaultyServer(lists_others) as s:
        with pytest.raises(FtriskError) as e:
            judge_for(s).check()
    msg = one_line(e)
    assert "model 'judge' is not served" in msg and "llama-3-8b" in msg and "fix model=" in msg

    with FaultyServer(lambda req: not_found) as s:  # no /models route at all
        with pytest.raises(FtriskError) as e:
            judge_for(s).check()
    assert "does not exist" in one_line(e)


def test_unreachable_endpoint_is_one_line():
    j = RubricJudge(endpoint=f"http://127.0.0.1:{free_port()}/v1", model="judge", timeout=0.5, retries=1)
    j.backoff = 0.01
    with pytest.raises(FtriskError) as e:
        j.check()
    assert "cannot connect" in one_line(e) and "start the server" in str(e.value)
    with pytest.raises(FtriskError):
        j.judge(PAIRS)  # judge() without check() checks first


def test_a_400_on_one_item_is_unjudged_with_its_detail():
    def too_long(req):
        if req.path.endswith("/models"):
            return reply(200, models("judge"))
        if "(1)" in req.user_text:
            return reply(400, {"error": {"message": "prompt is longer than the context"}})
        return reply(200, chat(rubric_answer(0, 5, 5)))

    with FaultyServer(too_long) as s:
        v = judge_for(s).judge(PAIRS)
    assert v[0].label == -1 and v[0].evidence == {"error": "http 400", "detail": "prompt is longer than the context"}
    assert [x.score for x in v[1:]] == [1.0, 1.0]


def test_runs_under_the_resumable_store(tmp_path):
    from ftrisk.judges.store import judge_rows

    rows = [{"id": f"i{k}", "prompt": p, "completion": r} for k, (p, r) in enumerate(PAIRS)]
    with FaultyServer(fine) as s:
        j = judge_for(s)
        j.set_cache_dir(tmp_path / "judge-cache")
        out = judge_rows(j, rows, tmp_path / "judged.jsonl")
    assert {v["label"] for v in out.values()} == {0} and out["i0"]["evidence"]["specific"] == 5
    assert json.loads((tmp_path / "judged.jsonl").read_text().splitlines()[0])["judge"] == j.name


# -- the key is never written ----------------------------------------------------------------------------


def test_the_key_never_appears_in_messages_evidence_or_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(KEY_VAR, KEY)

    def echo(req):  # a server that repeats the Authorization header back, everywhere
        auth = req.headers.get("Authorization", "")
        if req.path.endswith("/models"):
            return reply(200, models("judge"))
        if "(1)" in req.user_text:
            return reply(200, chat(f"you sent {auth}\n" + rubric_answer(0, 4, 5)))
        if "(2)" in req.user_text:
            return reply(400, {"error": {"message": f"bad request with {auth}"}})
        return reply(200, chat(f"no scores here, {auth}"))

    with FaultyServer(echo) as s:
        j = judge_for(s, api_key_env=KEY_VAR)
        j.set_cache_dir(tmp_path / "judge-cache")
        j.check()
        v = j.judge(PAIRS)
        assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in s.requests)
    assert [x.label for x in v] == [0, -1, -1]
    written = json.dumps([x.evidence for x in v]) + json.dumps(j.identity()) + j.name
    written += "".join(p.read_text() for p in (tmp_path / "judge-cache").iterdir())
    assert KEY not in written and "***" in written

    def refuses(req):
        return reply(401, {"error": {"message": f"invalid key {req.headers.get('Authorization')}"}})

    with FaultyServer(refuses) as s:
        with pytest.raises(FtriskError) as e:
            judge_for(s, api_key_env=KEY_VAR).check()
    assert KEY not in str(e.value) and KEY_VAR in str(e.value)


# -- the answer cache ------------------------------------------------------------------------------------


def test_a_rerun_is_served_from_the_cache_file(tmp_path):
    cache = tmp_path / "judge-cache"
    with FaultyServer(fine) as s:
        first = judge_for(s)
        first.set_cache_dir(cache)
        v1 = first.judge(PAIRS)
        sent = len(s.chat_requests())
        assert sent == len(PAIRS)
        lines = (cache / "rubric-answers.jsonl").read_text().splitlines()
        assert len(lines) == len(PAIRS)  # appended as answers arrive
        assert not any(p in "".join(lines) or r in "".join(lines) for p, r in PAIRS)  # hashes, no reply text

        second = judge_for(s)  # a new process: a new judge over the same folder
        second.set_cache_dir(cache)
        assert second.judge(PAIRS) == v1
        assert len(s.chat_requests()) == sent and len(s.requests) == sent + 1  # only the first judge's GET /models

        uncached = judge_for(s)  # no cache folder named: nothing on disk, so it asks again
        uncached.judge(PAIRS[:1])
        assert len(s.chat_requests()) == sent + 1


def test_cache_keys_prompt_response_and_model(tmp_path):
    def behaviour(req):
        if req.path.endswith("/models"):
            return reply(200, models("judge", "judge-2"))
        return reply(200, chat(rubric_answer(0, 4, 5)))

    with FaultyServer(behaviour) as s:
        j = judge_for(s, max_response_chars=20)
        j.set_cache_dir(tmp_path)
        j.judge(PAIRS[:1])
        n = len(s.chat_requests())
        j.judge([(PAIRS[0][0], PAIRS[0][1] + " and more after the clip")])  # same first 20 chars: cached
        assert len(s.chat_requests()) == n
        j.judge([(PAIRS[0][0] + "!", PAIRS[0][1])])  # another prompt
        j.judge([(PAIRS[0][0], "Paris.")])  # another reply
        assert len(s.chat_requests()) == n + 2
        other = judge_for(s, model="judge-2", max_response_chars=20)  # another judge model
        other.set_cache_dir(tmp_path)
        other.judge(PAIRS[:1])
        assert len(s.chat_requests()) == n + 3
        assert s.chat_requests()[-1].json["model"] == "judge-2"


def test_a_torn_cache_line_is_skipped_and_not_glued_to_the_next(tmp_path):
    with FaultyServer(fine) as s:
        j = judge_for(s)
        j.set_cache_dir(tmp_path)
        j.judge(PAIRS[:2])
        path = tmp_path / "rubric-answers.jsonl"
        torn = '{"key": "abc", "ans'
        path.write_text(path.read_text().splitlines()[0] + "\n" + torn)  # killed mid-write
        again = judge_for(s)
        again.set_cache_dir(tmp_path)
        again.judge(PAIRS[:2])
        assert len(s.chat_requests()) == 3  # only the torn answer is asked again
        lines = path.read_text().splitlines()
        assert lines[1] == torn  # the torn line stays alone on its line; every other row parses
        assert len([json.loads(line) for line in lines if line != torn]) == 2
        third = judge_for(s)
        third.set_cache_dir(tmp_path)
        third.judge(PAIRS[:2])
        assert len(s.chat_requests()) == 3


# -- slow: a real OpenAI-compatible server on the embedded model -----------------------------------------


@pytest.fixture(scope="module")
def local_server():
    reason = serve_available()
    if reason is None:
        try:
            model_dir = embedded_model_dir()
        except FtriskError as e:
            reason = f"embedded model unavailable: {e}"
    if reason:
        print(f"skipping the real-server rubric test: {reason}")
        pytest.skip(reason)
    with LocalServer(model_dir) as server:
        yield server


@pytest.mark.slow
def test_real_server_plumbing_and_cache(local_server, tmp_path):
    s = local_server
    pairs = content_free_pairs(20)
    opts = dict(endpoint=s.endpoint, model=s.model, max_tokens=16, concurrency=4, timeout=120.0)
    first = RubricJudge(**opts)
    first.set_cache_dir(tmp_path)
    first.check()  # the server lists the model
    t = time.perf_counter()
    v1 = [v for i in range(0, len(pairs), 8) for v in first.judge(pairs[i:i + 8])]
    first_s = time.perf_counter() - t
    assert len(v1) == 20 and all(v.label in (1, 0, -1) for v in v1)
    # a 135M judge judges badly: the plumbing is tested, not the verdicts
    assert all("raw" in v.evidence and isinstance(v.evidence["raw"], str) for v in v1), [v.evidence for v in v1]
    assert all(v.evidence.get("error") in (None, "unparseable") for v in v1)
    assert all((v.score is None) == (v.label == -1) for v in v1)
    chats = s.count("POST", "/chat/completions")
    assert chats >= 20

    second = RubricJudge(**opts)
    second.set_cache_dir(tmp_path)
    t = time.perf_counter()
    v2 = [v for i in range(0, len(pairs), 8) for v in second.judge(pairs[i:i + 8])]
    second_s = time.perf_counter() - t
    assert v2 == v1
    assert s.count("POST", "/chat/completions") == chats and s.count("GET", "/models") == 1  # zero requests
    assert second_s < 0.05 * first_s, (first_s, second_s)

    with pytest.raises(FtriskError) as e:  # a wrong model name against the real server
        RubricJudge(**{**opts, "model": "no-such-model", "timeout": 30.0}).check()
    assert "no-such-model" in one_line(e)
