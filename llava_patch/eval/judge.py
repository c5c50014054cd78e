"""LLM judges for the free-form benchmarks: Video-QA (Video-LLaVA / Video-ChatGPT) and MM-Vet.

Video-QA (docs/protocol.md, "Video QA"): the first 1 000 QA pairs of MSVD-, MSRVTT-, TGIF- and
ActivityNet-QA (the benchmark records' loader picks them) are judged by gpt-3.5-turbo, which answers
whether the prediction matches the ground truth ('yes'/'no') and rates the match 0–5; Accuracy =
yes / (yes + no), Score = mean score. MM-Vet (docs/protocol.md, "Benchmarks and scoring"): a GPT
grader rates each prediction's correctness in [0, 1]; the benchmark score is the mean × 100.

The prompts here are this project's own wording of those instructions, so absolute numbers can drift
from the published ones (the graders are also model snapshots that OpenAI retires). Every verdict is
cached in an append-only JSONL file keyed by question id plus a hash of the exact request (model,
temperature, messages: question, answer, prediction and prompt), so reruns cost no requests and any
change re-judges exactly the affected questions.
"""

from __future__ import annotations

import ast
import hashlib
import http.client
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
DEFAULT_BASE_URL = "https://api.openai.com/v1"

# Video-LLaVA's eval_video_qa.py asks for the "gpt-3.5-turbo" alias and sends no temperature (API default).
VIDEO_QA_MODEL = "gpt-3.5-turbo"
# MM-Vet's evaluator defaults to gpt-4-0613 at temperature 0.
MMVET_MODEL = "gpt-4-0613"

_RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
_BODY_EXCERPT = 500


class JudgeError(RuntimeError):
    """A failed judge request: missing configuration, HTTP error (with `status`) or malformed response."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ChatReply:
    """The first choice's text and the model name the server reports (the snapshot that answered)."""

    content: str
    model: str


class OpenAIChatClient:
    """Minimal client for an OpenAI-compatible `POST {base_url}/chat/completions`, over urllib.

    `api_key`/`base_url` default to $OPENAI_API_KEY / $OPENAI_BASE_URL (else the OpenAI endpoint).
    HTTP 408/409/429/5xx, connection errors and timeouts are retried up to `max_attempts` requests in all,
    sleeping `backoff · 2^(i−1)` seconds after the i-th (capped at `max_backoff`; a numeric Retry-After header wins).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 60.0,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
    ):
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if not key:
            raise JudgeError(f"no API key: set the {API_KEY_ENV} environment variable or pass api_key=")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self._api_key = key
        self.base_url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff

    def chat(self, messages: Sequence[Mapping[str, str]], model: str, temperature: float | None = None) -> ChatReply:
        """One chat completion; `temperature=None` leaves it out of the request (the API's default)."""
        payload: dict[str, Any] = {"model": model, "messages": list(messages)}
        if temperature is not None:
            payload["temperature"] = temperature
        body = self._post("/chat/completions", payload)
        try:
            return ChatReply(content=body["choices"][0]["message"]["content"], model=body.get("model", model))
        except (KeyError, IndexError, TypeError) as e:
            raise JudgeError(f"malformed chat completion (no choices[0].message.content): {_excerpt(body)}") from e

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        url = self.base_url + path
        data = json.dumps(payload).encode()
        headers = {"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json"}
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.max_attempts
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as e:
                text = e.read().decode("utf-8", "replace")
                if e.code not in _RETRY_STATUS or last:
                    tries = f" after {attempt} attempts" if e.code in _RETRY_STATUS else ""
                    raise JudgeError(f"POST {url} failed{tries}: HTTP {e.code}: {_excerpt(text)}", status=e.code) from e
                self._sleep(attempt, e.headers.get("Retry-After"))
                continue
            except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException) as e:
                if last:
                    raise JudgeError(f"POST {url} failed after {attempt} attempts: {e!r}") from e
                self._sleep(attempt, None)
                continue
            try:
                return json.loads(raw)
            except ValueError as e:
                raise JudgeError(f"POST {url}: response is not JSON: {_excerpt(raw.decode('utf-8', 'replace'))}") from e

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * 2 ** (attempt - 1)
        if retry_after is not None:
            try:
                delay = float(retry_after)
            except ValueError:
                pass
        time.sleep(max(0.0, min(delay, self.max_backoff)))


def _excerpt(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= _BODY_EXCERPT else text[:_BODY_EXCERPT] + "…"


# ----------------------------------------------------------------------------------------------------
# Video-QA judge
# ----------------------------------------------------------------------------------------------------

VIDEO_QA_SYSTEM = (
    "You assess answers to questions about videos. For each case you receive a question, the correct "
    "answer and an answer predicted by a model, and you decide whether the prediction agrees in meaning "
    "with the correct answer.\n"
    "Guidelines:\n"
    "- Judge the meaning, not the wording.\n"
    "- Synonyms and paraphrases of the correct answer count as agreement.\n"
    "- Decide how correct the prediction is with respect to the correct answer."
)

VIDEO_QA_USER = (
    "Assess this video question-answer case.\n\n"
    "Question: {question}\n"
    "Correct answer: {answer}\n"
    "Predicted answer: {pred}\n\n"
    "Reply with a Python dictionary literal and nothing else: the key 'pred' maps to the string 'yes' if "
    "the prediction agrees with the correct answer and 'no' otherwise, and the key 'score' maps to an "
    "integer (a number, not a string) from 0 to 5 rating the agreement, 5 meaning a perfect match. "
    "No explanation. Format example: {{'pred': 'no', 'score': 1}}"
)


def video_qa_messages(question: str, answer: str, pred: str) -> list[dict[str, str]]:
    """The judge request for one Video-QA pair."""
    return [
        {"role": "system", "content": VIDEO_QA_SYSTEM},
        {"role": "user", "content": VIDEO_QA_USER.format(question=question, answer=answer, pred=pred)},
    ]


def parse_video_qa_reply(text: str) -> dict[str, Any]:
    """{'pred': 'yes'|'no', 'score': int 0–5} from a judge reply (Python-dict or JSON, optionally fenced).

    A non-integer score is truncated, as the reference's `int(score)` does. Raises ValueError otherwise.
    """
    match = re.search(r"\{.*?\}", text, re.DOTALL)
    if match is None:
        raise ValueError("no {...} in the reply")
    try:
        parsed = ast.literal_eval(match.group(0))
    except (ValueError, SyntaxError):
        try:
            parsed = json.loads(match.group(0))
        except ValueError:
            raise ValueError("the {...} is neither a Python dict literal nor JSON") from None
    if not isinstance(parsed, dict):
        raise ValueError("the {...} is not a dict")
    fields = {str(k).strip().lower(): v for k, v in parsed.items()}
    verdict = str(fields.get("pred", "")).strip().strip(".!'\"").strip().lower()
    if verdict not in ("yes", "no"):
        raise ValueError(f"'pred' must be 'yes' or 'no', got {fields.get('pred')!r}")
    score = _number(fields.get("score"))
    if score is None or not 0 <= score <= 5:
        raise ValueError(f"'score' must be a number in [0, 5], got {fields.get('score')!r}")
    return {"pred": verdict, "score": int(score)}


def judge_video_qa(
    records: Iterable[Mapping[str, Any]],
    client: OpenAIChatClient,
    cache_path: str | os.PathLike,
    model: str = VIDEO_QA_MODEL,
    *,
    temperature: float | None = None,
    parse_attempts: int = 3,
    workers: int = 1,
) -> dict[str, Any]:
    """Judge Video-QA predictions (records with question_id, question, answer, pred).

    Returns {"accuracy": yes/(yes+no), "score": mean score, "judged", "yes", "no", "errors",
    "per_question": {question_id: {"pred", "score"}}}; accuracy and score are None when nothing was
    judged. A reply that does not parse is re-asked up to `parse_attempts` times in all, then listed in
    "errors" (and not cached, so a rerun retries it). HTTP failures that outlast the client's retries
    raise JudgeError; verdicts already obtained stay in the cache. `temperature=None` sends none, as the
    reference does (API default 1.0).
    """
    verdicts, errors = _judge_all(
        records,
        client,
        cache_path,
        model,
        build=lambda r: video_qa_messages(str(r["question"]), str(r["answer"]), str(r["pred"])),
        parse=parse_video_qa_reply,
        temperatures=[temperature] * parse_attempts,
        workers=workers,
    )
    yes = sum(v["pred"] == "yes" for v in verdicts.values())
    no = len(verdicts) - yes
    return {
        "accuracy": yes / (yes + no) if verdicts else None,
        "score": sum(v["score"] for v in verdicts.values()) / len(verdicts) if verdicts else None,
        "judged": len(verdicts),
        "yes": yes,
        "no": no,
        "errors": errors,
        "per_question": verdicts,
    }


# ----------------------------------------------------------------------------------------------------
# MM-Vet grader
# ----------------------------------------------------------------------------------------------------

MMVET_SYSTEM = (
    "You grade a model's answer to a question about an image against the ground-truth answer. Give a "
    "correctness score between 0.0 (completely wrong) and 1.0 (completely right), in steps of 0.1.\n"
    "- If the ground truth lists elements joined by <AND>, full credit requires every element to be in "
    "the prediction; give partial credit for the share of elements present.\n"
    "- If the ground truth lists elements joined by <OR>, any one of them in the prediction earns full "
    "credit.\n"
    "- For long, open-ended ground truths, score how much of their content the prediction conveys "
    "correctly; the wording does not matter.\n"
    "Reply with the number only."
)

MMVET_USER = "Question: {question}\nGround truth: {answer}\nPrediction: {pred}\nCorrectness score:"


def mmvet_messages(question: str, answer: str, pred: str) -> list[dict[str, str]]:
    """The grading request for one MM-Vet sample (<AND>/<OR> spaced out, as MM-Vet's evaluator does)."""
    answer = answer.replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    return [
        {"role": "system", "content": MMVET_SYSTEM},
        {"role": "user", "content": MMVET_USER.format(question=question, answer=answer, pred=pred)},
    ]


def parse_mmvet_reply(text: str) -> float:
    """The correctness in [0, 1]: the reply's first token, else its only number. Raises ValueError."""
    tokens = text.split()
    score = _number(tokens[0].rstrip(".,;")) if tokens else None
    if score is None:
        numbers = re.findall(r"(?<![\w.])\d*\.?\d+(?!\w|\.\d)", text)
        if len(numbers) != 1:
            raise ValueError(f"expected one number, found {len(numbers)}")
        score = float(numbers[0])
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"correctness {score} is outside [0, 1]")
    return score


def grade_mmvet(
    records: Iterable[Mapping[str, Any]],
    client: OpenAIChatClient,
    cache_path: str | os.PathLike,
    model: str = MMVET_MODEL,
    *,
    temperature: float = 0.0,
    parse_attempts: int = 3,
    workers: int = 1,
) -> dict[str, Any]:
    """Grade MM-Vet predictions (records with question_id, question, answer, pred) with a GPT grader.

    Returns {"score": mean correctness × 100 over the graded samples (None if none), "graded": n,
    "per_question": {question_id: correctness}, "errors": [...]}. An unparseable reply is re-asked with
    the temperature raised by 0.5 each time (as MM-Vet's evaluator does), up to `parse_attempts` requests,
    then listed in "errors" rather than scored 0 as the official evaluator does: an official-style total
    counts each error as 0 over all samples. The official grader is few-shot; this prompt is not.
    """
    scores, errors = _judge_all(
        records,
        client,
        cache_path,
        model,
        build=lambda r: mmvet_messages(str(r["question"]), str(r["answer"]), str(r["pred"])),
        parse=parse_mmvet_reply,
        temperatures=[min(temperature + 0.5 * i, 2.0) for i in range(parse_attempts)],
        workers=workers,
    )
    return {
        "score": 100.0 * sum(scores.values()) / len(scores) if scores else None,
        "graded": len(scores),
        "per_question": scores,
        "errors": errors,
    }


# ----------------------------------------------------------------------------------------------------
# Shared machinery: cache, retries on unparseable replies, optional thread pool
# ----------------------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN


def _request_hash(model: str, temperature: float | None, messages: list[dict[str, str]]) -> str:
    blob = json.dumps({"model": model, "temperature": temperature, "messages": messages}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class _Cache:
    """Append-only JSONL of verdicts; a line is {"question_id", "key", "model", "reply", "result"}."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.entries: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        data = self.path.read_bytes() if self.path.exists() else b""
        self._torn = bool(data) and not data.endswith(b"\n")  # a crash mid-line must not swallow the next one
        lines = data.decode("utf-8", "replace").splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                self.entries[(str(entry["question_id"]), entry["key"])] = entry["result"]
            except (ValueError, KeyError, TypeError):
                warnings.warn(f"{self.path}:{number}: skipping an unreadable cache line", stacklevel=3)

    def get(self, question_id: Any, key: str) -> Any:
        return self.entries.get((str(question_id), key))

    def add(self, question_id: Any, key: str, reply: ChatReply, result: Any) -> None:
        line = json.dumps(
            {"question_id": question_id, "key": key, "model": reply.model, "reply": reply.content, "result": result}
        )
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(("\n" if self._torn else "") + line + "\n")
                f.flush()
            self._torn = False
            self.entries[(str(question_id), key)] = result


def _judge_all(
    records: Iterable[Mapping[str, Any]],
    client: OpenAIChatClient,
    cache_path: str | os.PathLike,
    model: str,
    build: Callable[[Mapping[str, Any]], list[dict[str, str]]],
    parse: Callable[[str], Any],
    temperatures: list[float | None],
    workers: int,
) -> tuple[dict[Any, Any], list[dict[str, Any]]]:
    """Verdicts by question id (input order) and the errors, asking the judge only for uncached records."""
    if not temperatures:
        raise ValueError("parse_attempts must be >= 1")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    records = list(records)
    seen: set[str] = set()
    for record in records:
        missing = [k for k in ("question_id", "question", "answer", "pred") if k not in record]
        if missing:
            raise KeyError(f"record {record.get('question_id', '?')!r} lacks {', '.join(missing)}")
        if str(record["question_id"]) in seen:
            raise ValueError(f"duplicate question_id {record['question_id']!r}")
        seen.add(str(record["question_id"]))

    cache = _Cache(cache_path)

    def judge(record: Mapping[str, Any]) -> tuple[Any, dict[str, Any] | None]:
        qid = record["question_id"]
        messages = build(record)
        key = _request_hash(model, temperatures[0], messages)
        cached = cache.get(qid, key)
        if cached is not None:
            return cached, None
        problems = []
        for temperature in temperatures:
            reply = client.chat(messages, model=model, temperature=temperature)
            try:
                result = parse(reply.content)
            except ValueError as e:
                problems.append({"reply": reply.content, "reason": str(e)})
                continue
            cache.add(qid, key, reply, result)
            return result, None
        return None, {"question_id": qid, "error": f"unparseable reply after {len(temperatures)} attempts", "attempts": problems}

    if workers == 1:
        outcomes = [judge(r) for r in records]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(judge, records))
    results = {r["question_id"]: result for r, (result, error) in zip(records, outcomes) if error is None}
    errors = [error for _, error in outcomes if error is not None]
    return results, errors
