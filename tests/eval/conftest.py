"""Fixtures of the evaluation tests: a real OpenAI-compatible HTTP server on loopback for the LLM judge."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

KEY = "test-key"


class FakeOpenAI:
    """State of the fake server: replies chosen by substring of the last message; scripted failures."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[dict] = []  # JSON bodies, in arrival order
        self.failures: list[int] = []  # HTTP statuses for the next requests, then normal answers
        self.delays: list[float] = []  # seconds to stall the next requests before answering
        self.replies: dict[str, str] = {}
        self.url = ""

    def reply_for(self, body: dict) -> str:
        content = body["messages"][-1]["content"]
        for needle, reply in self.replies.items():
            if needle in content:
                return reply
        return "{'pred': 'no', 'score': 0}"


def _handler(state: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append(body)
                failure = state.failures.pop(0) if state.failures else None
                delay = state.delays.pop(0) if state.delays else 0.0
            if self.path != "/v1/chat/completions":
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            if self.headers.get("Authorization") != f"Bearer {KEY}":
                return self._send(401, {"error": {"message": "Incorrect API key provided"}})
            time.sleep(delay)
            if failure is not None:
                return self._send(failure, {"error": {"message": "server exploded"}}, {"Retry-After": "0"})
            reply = state.reply_for(body)
            return self._send(
                200,
                {
                    "object": "chat.completion",
                    "model": body["model"] + "-snapshot",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                },
            )

    return Handler


@pytest.fixture
def server(monkeypatch):
    state = FakeOpenAI()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", state.url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)
