"""The OpenAI-compatible client against a real local HTTP server (127.0.0.1, free port)."""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("httpx")

from agents.openai_client import (  # noqa: E402
    ChatAgent,
    ChatAPIError,
    ChatClient,
    ChatConnectionError,
    ChatHTTPError,
    ChatResponseError,
    ChatResult,
    ChatTimeoutError,
    backoff_delay,
    make_agent,
    parse_retry_after,
)
from opid_gym.agent import AgentRequest  # noqa: E402
from tests.support.openai_server import ChatServer, Close, Echo, Garbage, Hold, Reply, Sleep, Status  # noqa: E402

MSG = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]


@pytest.fixture
def server():
    with ChatServer() as srv:
        yield srv


def client_for(server: ChatServer, **kw) -> ChatClient:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("backoff", 0.01)
    kw.setdefault("max_backoff", 0.05)
    return ChatClient(base_url=server.base_url, model="test-model", api_key="sk-test", **kw)


def test_success_sends_request_and_counts_usage(server):
    server.script(Reply("first", prompt_tokens=11, completion_tokens=4), Reply("second", prompt_tokens=20,
                                                                              completion_tokens=6))
    with client_for(server, defaults={"temperature": 0.4, "max_tokens": 64}) as client:
        r1 = client.chat(MSG, seed=123)
        r2 = client.chat(MSG, temperature=0.0)
    assert (r1.text, r1.prompt_tokens, r1.completion_tokens, r1.attempts) == ("first", 11, 4, 1)
    assert r2.text == "second" and r2.finish_reason == "stop" and r2.model == "test-model"
    assert client.usage.calls == 2 and client.usage.failures == 0
    assert client.usage.prompt_tokens == 31 and client.usage.completion_tokens == 10
    req = server.requests[0]
    assert req.path == "/v1/chat/completions"
    assert req.headers["Authorization"] == "Bearer sk-test"
    assert req.body == {"model": "test-model", "messages": MSG, "temperature": 0.4, "max_tokens": 64, "seed": 123}
    assert server.requests[1].body["temperature"] == 0.0  # per-call value overrides the default


def test_no_api_key_sends_no_authorization(server):
    client = ChatClient(base_url=server.base_url + "/", model="m", api_key=None)
    assert client.chat(MSG).text == "hello there"  # Echo default; trailing slash tolerated
    assert "Authorization" not in server.requests[0].headers


@pytest.mark.parametrize("code", [429, 500, 503])
def test_retryable_status_then_success(server, code):
    server.script(Status(code), Status(code), Reply("finally", prompt_tokens=5, completion_tokens=2))
    client = client_for(server, max_retries=3)
    delays: list[float] = []
    client.sleep = delays.append
    result = client.chat(MSG)
    assert result.text == "finally" and result.attempts == 3
    assert len(server.requests) == 3 and len(delays) == 2
    assert client.usage.calls == 1 and client.usage.failures == 0 and client.usage.prompt_tokens == 5


def test_retry_after_header_is_honoured(server):
    server.script(Status(429, retry_after=0.03), Reply("ok"))
    client = client_for(server, backoff=10.0, max_backoff=60.0)  # computed delay would be >= 5 s
    delays: list[float] = []
    client.sleep = delays.append
    assert client.chat(MSG).text == "ok"
    assert delays == [pytest.approx(0.03)]


def test_retries_exhausted_gives_clear_error(server):
    server.default = Status(500)
    client = client_for(server, max_retries=2)
    client.sleep = lambda s: None
    with pytest.raises(ChatHTTPError) as info:
        client.chat(MSG)
    assert info.value.status == 500 and info.value.attempts == 3
    assert "HTTP 500" in str(info.value) and "after 3 attempts" in str(info.value)
    assert "test server error 500" in str(info.value)  # the server's own message is kept
    assert len(server.requests) == 3
    assert client.usage.failures == 1 and client.usage.calls == 0


def test_client_errors_are_not_retried(server):
    server.script(Status(401), Reply("never"))
    client = client_for(server, max_retries=5)
    with pytest.raises(ChatHTTPError) as info:
        client.chat(MSG)
    assert info.value.status == 401 and info.value.attempts == 1 and len(server.requests) == 1


def test_timeout(server):
    server.script(Sleep(1.5, then=Reply("late")), Sleep(1.5, then=Reply("late")))
    client = client_for(server, timeout=0.3, max_retries=1)
    client.sleep = lambda s: None
    with pytest.raises(ChatTimeoutError) as info:
        client.chat(MSG)
    assert info.value.attempts == 2 and "0.3s" in str(info.value)


def test_timeout_then_success(server):
    server.script(Sleep(1.5, then=Reply("late")), Reply("on time"))
    client = client_for(server, timeout=0.3, max_retries=1)
    assert client.chat(MSG).text == "on time"


@pytest.mark.parametrize("body", [
    b'{"choices": [ {"message": ',                      # truncated JSON
    b"<html><body>502 Bad Gateway</body></html>",     # a proxy's HTML page
    b'{"id": "x", "object": "chat.completion"}',       # JSON without choices
    b'{"choices": [{"message": {"content": 42}}]}',    # wrong content type
    b'[1, 2, 3]',
    b"\xff\xfe\x00garbage",
])
def test_malformed_answers_fail_clearly(server, body):
    server.default = Garbage(body)
    client = client_for(server, max_retries=1)
    client.sleep = lambda s: None
    with pytest.raises(ChatResponseError) as info:
        client.chat(MSG)
    assert info.value.attempts == 2 and len(server.requests) == 2


def test_malformed_then_good_answer_recovers(server):
    server.script(Garbage(b"not json"), Reply("good"))
    assert client_for(server).chat(MSG).text == "good"


def test_missing_usage_and_null_content_count_as_zero(server):
    server.script(Reply("x", usage=False), Garbage(json.dumps(
        {"choices": [{"message": {"role": "assistant", "content": None}, "finish_reason": "content_filter"}]}
    ).encode()))
    client = client_for(server)
    r1, r2 = client.chat(MSG), client.chat(MSG)
    assert (r1.text, r1.prompt_tokens, r1.completion_tokens) == ("x", 0, 0)
    assert (r2.text, r2.finish_reason) == ("", "content_filter")
    assert client.usage.calls == 2 and client.usage.prompt_tokens == 0


def test_dropped_connection_is_a_connection_error(server):
    server.default = Close()
    client = client_for(server, max_retries=1)
    client.sleep = lambda s: None
    with pytest.raises(ChatConnectionError):
        client.chat(MSG)


def test_unreachable_server():
    with ChatServer() as srv:
        url = srv.base_url
    client = ChatClient(base_url=url, model="m", timeout=2.0, max_retries=0)
    with pytest.raises(ChatConnectionError, match="cannot talk to"):
        client.chat(MSG)


def test_concurrency_limit_respected(server):
    # Every request waits until 3 are in flight (or 2 s): an unlimited client would
    # reach 12, a serial one 1.
    server.default = Hold(3, timeout=2.0, then=Echo())
    client = client_for(server, concurrency=3)
    batch = [[{"role": "user", "content": f"q{i}"}] for i in range(12)]
    results = client.chat_many(batch)
    assert [r.text for r in results] == [f"q{i}" for i in range(12)]  # order kept
    assert server.max_in_flight == 3
    assert client.usage.calls == 12


def test_limit_holds_across_threads(server):
    # Two batches sent from two threads share one client's limit.
    import threading

    # Hold(3): a client over its limit of 2 gets 3 requests in flight; a correct one
    # waits out the hold timeout on each wave of 2.
    server.default = Hold(3, timeout=0.25, then=Echo())
    client = client_for(server, concurrency=2)
    batch = [[{"role": "user", "content": f"q{i}"}] for i in range(4)]
    threads = [threading.Thread(target=client.chat_many, args=(batch,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.max_in_flight == 2 and client.usage.calls == 8


def test_batch_returns_errors_without_raising(server):
    def answer(body):
        return body["messages"][-1]["content"].upper()

    server.default = Reply(answer, prompt_tokens=3, completion_tokens=1)

    def route(handler, body):  # requests saying "fail" get a 400, others an answer
        if body["messages"][-1]["content"] == "fail":
            Status(400)(handler, body)
        else:
            Reply(answer, prompt_tokens=3, completion_tokens=1)(handler, body)

    server.default = route
    client = client_for(server, concurrency=4)
    batch = [[{"role": "user", "content": c}] for c in ["a", "fail", "b", "fail", "c"]]
    out = client.chat_many(batch, seeds=[1, 2, 3, 4, 5])
    assert [type(r) for r in out] == [ChatResult, ChatHTTPError, ChatResult, ChatHTTPError, ChatResult]
    assert [r.text for r in out if isinstance(r, ChatResult)] == ["A", "B", "C"]
    assert sorted(r.body["seed"] for r in server.requests) == [1, 2, 3, 4, 5]
    assert client.usage.calls == 3 and client.usage.failures == 2 and client.usage.prompt_tokens == 9


def test_parse_retry_after():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0  # in the past


def test_backoff_grows_exponentially_within_jitter_and_cap():
    rng = random.Random(0)
    for attempt, nominal in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 10.0)]:  # base 0.5, cap 10
        for _ in range(50):
            d = backoff_delay(attempt, base=0.5, cap=10.0, rng=rng)
            assert nominal / 2 <= d <= nominal


def test_bad_configuration():
    with pytest.raises(ValueError, match="base_url"):
        ChatClient(base_url="localhost:8000", model="m")
    with pytest.raises(ValueError):
        ChatClient(base_url="http://x/v1", model="m", concurrency=0)


# ------------------------------------------------------------------------ agent
def _request(text: str, seed: int) -> AgentRequest:
    return AgentRequest(messages=[{"role": "user", "content": text}], seed=seed, step=0, observation=text,
                        admissible_actions=None, expert_action=None, action_format="think_action")


def test_agent_sends_messages_and_seeds(server, tmp_path):
    key = tmp_path / "key.txt"
    key.write_text("sk-from-file\n")
    agent = make_agent("my-model", base_url=server.base_url, api_key_file=str(key), temperature=0.4,
                       max_new_tokens=32, stop=["</action>"], max_prompt_tokens=2048, backoff=0.01)
    replies = agent.act([_request("one", 11), _request("two", 22)])
    assert [r.text for r in replies] == ["one", "two"] and replies[0].token_ids is None
    bodies = sorted((r.body for r in server.requests), key=lambda b: b["seed"])
    assert [b["seed"] for b in bodies] == [11, 22]
    assert bodies[0]["model"] == "my-model" and bodies[0]["max_tokens"] == 32
    assert bodies[0]["stop"] == ["</action>"] and bodies[0]["temperature"] == 0.4
    assert server.requests[0].headers["Authorization"] == "Bearer sk-from-file"
    assert agent.name == "openai:my-model" and agent.usage.calls == 2


def test_agent_failure_modes(server):
    server.default = Status(400)
    agent = make_agent("m", base_url=server.base_url)
    with pytest.raises(ChatAPIError, match="HTTP 400"):
        agent.act([_request("x", 1)])
    lenient = make_agent("m", base_url=server.base_url, on_error="empty")
    assert [r.text for r in lenient.act([_request("x", 1), _request("y", 2)])] == ["", ""]
    assert lenient.failed_requests == 2
    assert isinstance(lenient, ChatAgent)


def test_agent_options_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        make_agent("m", base_url="http://127.0.0.1:9/v1", api_key_file=str(tmp_path / "missing"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        make_agent("m", base_url="http://127.0.0.1:9/v1", api_key_file=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="model name"):
        make_agent("", base_url="http://127.0.0.1:9/v1")
