"""The LLM judges against a real local HTTP server that speaks the chat-completions protocol."""

import json
import socket

import pytest

from llava_patch.eval.judge import (
    JudgeError,
    OpenAIChatClient,
    grade_mmvet,
    judge_video_qa,
    parse_mmvet_reply,
    parse_video_qa_reply,
)

@pytest.fixture
def client(server):
    return OpenAIChatClient(timeout=5, max_attempts=3, backoff=0.0)


VIDEO_REPLIES = {
    "Predicted answer: a dog\n": "{'pred': 'yes', 'score': 5}",
    "Predicted answer: a cat\n": '{"pred": "no", "score": 1}',
    "Predicted answer: two men\n": "```python\n{'pred': 'Yes', 'score': 4}\n```",
    "Predicted answer: running\n": "{'pred': 'no', 'score': 2.8}",
    "Predicted answer: gibberish\n": "I am not able to evaluate this.",
}

VIDEO_RECORDS = [
    {"question_id": "v_0", "question": "what animal is shown?", "answer": "dog", "pred": "a dog"},
    {"question_id": "v_1", "question": "what animal sleeps?", "answer": "dog", "pred": "a cat"},
    {"question_id": "v_2", "question": "who is talking?", "answer": "men", "pred": "two men"},
    {"question_id": "v_3", "question": "what is the woman doing?", "answer": "cook", "pred": "running"},
]


def test_video_qa_accuracy_and_score(server, client, tmp_path):
    server.replies = VIDEO_REPLIES
    result = judge_video_qa(VIDEO_RECORDS, client, tmp_path / "cache.jsonl")
    assert (result["yes"], result["no"], result["judged"], result["errors"]) == (2, 2, 4, [])
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["score"] == pytest.approx((5 + 1 + 4 + 2) / 4)  # 2.8 truncates to 2, like the reference
    assert result["per_question"]["v_2"] == {"pred": "yes", "score": 4}
    assert len(server.requests) == 4
    request = server.requests[0]
    assert request["model"] == "gpt-3.5-turbo"
    assert "temperature" not in request  # the reference sends none
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    user = request["messages"][1]["content"]
    assert "what animal is shown?" in user and "Correct answer: dog\n" in user and "Predicted answer: a dog\n" in user


def test_video_qa_cache_skips_requests_and_rejudges_changes(server, client, tmp_path):
    server.replies = VIDEO_REPLIES
    cache = tmp_path / "judge" / "cache.jsonl"
    first = judge_video_qa(VIDEO_RECORDS, client, cache)
    assert len(server.requests) == 4
    lines = [json.loads(line) for line in cache.read_text().splitlines()]
    assert [line["question_id"] for line in lines] == ["v_0", "v_1", "v_2", "v_3"]
    assert lines[0]["model"] == "gpt-3.5-turbo-snapshot" and lines[0]["result"] == {"pred": "yes", "score": 5}

    again = judge_video_qa(VIDEO_RECORDS, client, cache)
    assert len(server.requests) == 4  # no HTTP at all
    assert again == first

    changed = [dict(r) for r in VIDEO_RECORDS]
    changed[1]["pred"] = "a dog"
    result = judge_video_qa(changed, client, cache)
    assert len(server.requests) == 5  # exactly the changed prediction
    assert "Predicted answer: a dog\n" in server.requests[-1]["messages"][1]["content"]
    assert result["per_question"]["v_1"] == {"pred": "yes", "score": 5}
    assert (result["yes"], result["no"]) == (3, 1)

    judge_video_qa(VIDEO_RECORDS, client, cache, model="gpt-4o-mini")
    assert len(server.requests) == 9  # another judge model is another verdict


def test_unparseable_reply_is_retried_then_recorded(server, client, tmp_path):
    server.replies = VIDEO_REPLIES
    records = VIDEO_RECORDS[:1] + [
        {"question_id": "v_9", "question": "what happens?", "answer": "a fight", "pred": "gibberish"}
    ]
    cache = tmp_path / "cache.jsonl"
    result = judge_video_qa(records, client, cache, parse_attempts=3)
    assert len(server.requests) == 1 + 3
    assert result["judged"] == 1 and result["accuracy"] == 1.0
    [error] = result["errors"]
    assert error["question_id"] == "v_9" and "3 attempts" in error["error"]
    assert [a["reply"] for a in error["attempts"]] == ["I am not able to evaluate this."] * 3
    assert len(cache.read_text().splitlines()) == 1  # errors are not cached ...
    judge_video_qa(records, client, cache, parse_attempts=3)
    assert len(server.requests) == 4 + 3  # ... so a rerun asks again, and only for them


def test_nothing_judged_gives_no_accuracy(server, client, tmp_path):
    server.replies = VIDEO_REPLIES
    record = {"question_id": 1, "question": "q", "answer": "a", "pred": "gibberish"}
    result = judge_video_qa([record], client, tmp_path / "c.jsonl", parse_attempts=1)
    assert result["accuracy"] is None and result["score"] is None and len(result["errors"]) == 1


def test_workers_give_the_same_verdicts(server, client, tmp_path):
    server.replies = VIDEO_REPLIES
    records = [dict(r, question_id=f"{r['question_id']}_{i}") for i in range(5) for r in VIDEO_RECORDS]
    result = judge_video_qa(records, client, tmp_path / "cache.jsonl", workers=4)
    assert (result["judged"], result["yes"], result["no"]) == (20, 10, 10)
    assert len(server.requests) == 20
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == 20
    assert list(result["per_question"]) == [r["question_id"] for r in records]


def test_torn_cache_line_is_skipped_and_repaired(server, client, tmp_path):
    server.replies = VIDEO_REPLIES
    cache = tmp_path / "cache.jsonl"
    judge_video_qa(VIDEO_RECORDS[:1], client, cache)
    cache.write_text(cache.read_text() + '{"question_id": "v_1", "ke')  # a crash mid-write
    with pytest.warns(UserWarning, match="unreadable cache line"):
        result = judge_video_qa(VIDEO_RECORDS[:2], client, cache)
    assert len(server.requests) == 2 and result["judged"] == 2
    lines = cache.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["question_id"] == "v_1"


def test_duplicate_or_incomplete_records_are_refused(client, tmp_path):
    with pytest.raises(ValueError, match="duplicate question_id"):
        judge_video_qa(VIDEO_RECORDS + VIDEO_RECORDS[:1], client, tmp_path / "c.jsonl")
    with pytest.raises(KeyError, match="pred"):
        judge_video_qa([{"question_id": 1, "question": "q", "answer": "a"}], client, tmp_path / "c.jsonl")


# ---------------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 429])
def test_retry_after_server_error_then_success(server, client, status):
    server.failures = [status]
    reply = client.chat([{"role": "user", "content": "hi"}], model="m", temperature=0.0)
    assert reply.content == "{'pred': 'no', 'score': 0}" and reply.model == "m-snapshot"
    assert len(server.requests) == 2
    assert server.requests[1] == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0}


def test_retries_are_bounded_and_the_error_is_clear(server):
    server.failures = [500] * 10
    client = OpenAIChatClient(max_attempts=2, backoff=0.0)
    with pytest.raises(JudgeError, match="after 2 attempts: HTTP 500.*server exploded") as info:
        client.chat([{"role": "user", "content": "hi"}], model="m")
    assert info.value.status == 500 and len(server.requests) == 2


def test_client_errors_are_not_retried(server):
    client = OpenAIChatClient(api_key="wrong", max_attempts=3, backoff=0.0)
    with pytest.raises(JudgeError, match="HTTP 401.*Incorrect API key") as info:
        client.chat([{"role": "user", "content": "hi"}], model="m")
    assert info.value.status == 401 and len(server.requests) == 1
    assert "wrong" not in str(info.value)


def test_connection_errors_are_retried_then_reported():
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAIChatClient(api_key="test-key", base_url=f"http://127.0.0.1:{port}/v1", max_attempts=2, backoff=0.0)
    with pytest.raises(JudgeError, match="after 2 attempts"):
        client.chat([{"role": "user", "content": "hi"}], model="m")


def test_timeout_is_retried(server):
    server.delays = [1.0]
    client = OpenAIChatClient(timeout=0.2, max_attempts=2, backoff=0.0)
    assert client.chat([{"role": "user", "content": "hi"}], model="m").model == "m-snapshot"
    assert len(server.requests) == 2


def test_missing_api_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(JudgeError, match="OPENAI_API_KEY"):
        OpenAIChatClient()


def test_constructor_arguments_override_the_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/nowhere")
    client = OpenAIChatClient(api_key="test-key", base_url=server.url + "/", max_attempts=1)
    assert client.chat([{"role": "user", "content": "hi"}], model="m").model == "m-snapshot"


def test_default_base_url(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert OpenAIChatClient(api_key="k").base_url == "https://api.openai.com/v1"


# ---------------------------------------------------------------------------------------------------
# MM-Vet
# ---------------------------------------------------------------------------------------------------

MMVET_RECORDS = [
    {"question_id": "v1_0", "question": "What is x in the equation?", "answer": "-1<AND>-5", "pred": "x = -1"},
    {"question_id": "v1_1", "question": "Which city is this?", "answer": "Paris<OR>Paris, France", "pred": "Paris"},
    {"question_id": "v1_2", "question": "Which city is this?", "answer": "Paris", "pred": "London"},
    {"question_id": "v1_3", "question": "Explain the meme.", "answer": "A long explanation.", "pred": "Most of it."},
]
MMVET_REPLIES = {
    "Prediction: x = -1\n": "0.5",
    "Prediction: Paris\n": "1.0",
    "Prediction: London\n": "0.0",
    "Prediction: Most of it.\n": "Correctness score: 0.8",
    "Prediction: ???\n": "N/A",
}


def test_mmvet_score_and_cache(server, client, tmp_path):
    server.replies = MMVET_REPLIES
    cache = tmp_path / "mmvet.jsonl"
    result = grade_mmvet(MMVET_RECORDS, client, cache)
    assert result["per_question"] == {"v1_0": 0.5, "v1_1": 1.0, "v1_2": 0.0, "v1_3": 0.8}
    assert result["score"] == pytest.approx(100 * (0.5 + 1.0 + 0.0 + 0.8) / 4)
    assert result["graded"] == 4 and result["errors"] == []
    request = server.requests[0]
    assert request["model"] == "gpt-4-0613" and request["temperature"] == 0.0
    assert "Ground truth: -1 <AND> -5\n" in request["messages"][-1]["content"]
    assert grade_mmvet(MMVET_RECORDS, client, cache) == result
    assert len(server.requests) == 4


def test_mmvet_unparseable_raises_temperature_then_errors(server, client, tmp_path):
    server.replies = MMVET_REPLIES
    record = {"question_id": "v1_9", "question": "q", "answer": "a", "pred": "???"}
    result = grade_mmvet(MMVET_RECORDS[:1] + [record], client, tmp_path / "mmvet.jsonl", parse_attempts=3)
    assert [r["temperature"] for r in server.requests[1:]] == [0.0, 0.5, 1.0]
    assert result["graded"] == 1 and result["score"] == pytest.approx(50.0)
    assert [e["question_id"] for e in result["errors"]] == ["v1_9"]


# ---------------------------------------------------------------------------------------------------
# Reply parsing
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{'pred': 'yes', 'score': 4}", {"pred": "yes", "score": 4}),
        ('{"pred": "no", "score": 0}', {"pred": "no", "score": 0}),
        ("{'pred': 'Yes.', 'score': '5'}", {"pred": "yes", "score": 5}),
        ("Sure! {'Pred': 'no', 'Score': 1.9} Hope this helps.", {"pred": "no", "score": 1}),
        ('```json\n{"pred": "yes", "score": 3}\n```', {"pred": "yes", "score": 3}),
    ],
)
def test_parse_video_qa_reply(text, expected):
    assert parse_video_qa_reply(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "yes, 4",
        "{'pred': 'maybe', 'score': 3}",
        "{'pred': 'yes', 'score': 7}",
        "{'pred': 'yes'}",
        "{'pred': 'yes', 'score': 'high'}",
        "{'pred': 'yes', 'score': True}",
        "{'pred': 'yes' 'score': 3",
    ],
)
def test_parse_video_qa_reply_rejects(text):
    with pytest.raises(ValueError):
        parse_video_qa_reply(text)


@pytest.mark.parametrize(
    "text, expected",
    [("0.7", 0.7), (" 1.0.", 1.0), ("0", 0.0), ("Score: 0.3", 0.3), ("The correctness is 0.8.", 0.8)],
)
def test_parse_mmvet_reply(text, expected):
    assert parse_mmvet_reply(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "N/A", "1.5", "-0.2", "between 0.2 and 0.4", "nan", "inf"])
def test_parse_mmvet_reply_rejects(text):
    with pytest.raises(ValueError):
        parse_mmvet_reply(text)
