import json
import re
import socket
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from explain.items import Item
from training.data.types import Sample
from training.distill import TeacherUnavailableError, distill, read_distilled
from training.prompts import DEFAULT_TEMPLATE, format_teacher_prompt
from training.teachers import OpenAICompatibleTeacher, TeacherFailure, TeacherRequest
from training.teachers.openai import retry_after_seconds


class FakeLLM:
    """A chat/completions server on 127.0.0.1 whose faults are scripted by prompt keyword.

    RATE: 429 with Retry-After once; FLAKY: 500 once; SLOW: the first answer takes 1 s;
    BAD: always 400. `fail_after` turns every request after the first N into a 500.
    """

    def __init__(self, delay_s=0.0, fail_after=None):
        self.delay_s, self.fail_after = delay_s, fail_after
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = self.total = 0
        self.log = []  # (path, prompt, status, authorization)
        self.seen = set()

    def answer(self, path, body, headers):
        prompt = body["messages"][0]["content"] if "messages" in body else body["prompt"]
        with self.lock:
            self.total += 1
            first = (prompt, path) not in self.seen
            self.seen.add((prompt, path))
            total = self.total
        if self.fail_after is not None and total > self.fail_after:
            return 500, {}, {"error": "down"}
        if "RATE" in prompt and first:
            return 429, {"Retry-After": "1"}, {"error": "slow down"}
        if "FLAKY" in prompt and first:
            return 500, {}, {"error": "oops"}
        if "BAD" in prompt:
            return 400, {}, {"error": "bad request"}
        if "SLOW" in prompt and first:
            time.sleep(1.0)
        time.sleep(self.delay_s)
        match = re.search(r"Recommended movie: (.+?) \(", prompt)
        text = f"{match.group(1) if match else prompt} is a great pick for you, given what you watched."
        choice = (
            {"message": {"role": "assistant", "content": text}}
            if "messages" in body
            else {"text": " " + text}
        )
        return 200, {}, {"id": "x", "choices": [choice]}

    def handler(self):
        llm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                with llm.lock:
                    llm.in_flight += 1
                    llm.max_in_flight = max(llm.max_in_flight, llm.in_flight)
                counted = True
                try:
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    status, headers, payload = llm.answer(self.path, body, self.headers)
                    with llm.lock:
                        prompt = body.get("prompt") or body["messages"][0]["content"]
                        llm.log.append(
                            (self.path, prompt, status, self.headers.get("Authorization"))
                        )
                        # Out of flight once answered, before the bytes go out: the client may
                        # send its next request the moment it reads them.
                        llm.in_flight -= 1
                        counted = False
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    for key, value in {**headers, "Content-Type": "application/json"}.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except ConnectionError:
                    pass  # the client left (a stream closed early): nothing to answer
                finally:
                    if counted:
                        with llm.lock:
                            llm.in_flight -= 1

            def log_message(self, *args):
                pass

        return Handler


class Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default 5 would drop connection attempts of a busy client


@pytest.fixture
def server():
    started = []

    def start(**kwargs):
        llm = FakeLLM(**kwargs)
        httpd = Server(("127.0.0.1", 0), llm.handler())
        httpd.daemon_threads = True
        threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        started.append(httpd)
        return llm, f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def requests_for(*prompts):
    item = Item("Alien (1979)", "1", {"genres": ["Sci-Fi"]})
    return [TeacherRequest(Sample(f"u{k}", (), item, k), p) for k, p in enumerate(prompts)]


def test_chat_completions_in_order_with_the_api_key(server, monkeypatch):
    llm, url = server()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAICompatibleTeacher(url + "/v1/", "oracle") as teacher:
        results = teacher.explain(requests_for("one", "two", "three"))
    assert results == [
        f"{p} is a great pick for you, given what you watched." for p in ("one", "two", "three")
    ]
    assert {entry[0] for entry in llm.log} == {"/v1/chat/completions"}
    assert {entry[3] for entry in llm.log} == {"Bearer sk-test"}
    assert teacher.name == "openai:oracle"


def test_plain_completions_endpoint(server):
    llm, url = server()
    with OpenAICompatibleTeacher(url, "oracle", mode="completions", api_key="") as teacher:
        assert teacher.explain(requests_for("hello")) == [
            "hello is a great pick for you, given what you watched."
        ]
    assert llm.log[0][0] == "/v1/completions" and llm.log[0][3] is None


def test_rate_limits_and_server_errors_are_retried(server):
    llm, url = server()
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    with OpenAICompatibleTeacher(url, "m", backoff_s=0.2, sleep=record) as teacher:
        results = teacher.explain(requests_for("RATE me", "FLAKY me", "fine"))
    assert all(isinstance(r, str) and r.endswith("given what you watched.") for r in results)
    statuses = [(prompt, status) for _, prompt, status, _ in llm.log]
    assert statuses.count(("RATE me", 429)) == 1 and statuses.count(("RATE me", 200)) == 1
    assert statuses.count(("FLAKY me", 500)) == 1 and statuses.count(("FLAKY me", 200)) == 1
    assert 1.0 in waits  # the server's Retry-After, exactly
    (backoff,) = [w for w in waits if w != 1.0]
    assert 0.1 <= backoff <= 0.3  # backoff_s with jitter on the first retry


def test_retry_after_is_really_waited(server):
    _, url = server()
    started = time.monotonic()
    with OpenAICompatibleTeacher(url, "m") as teacher:
        (result,) = teacher.explain(requests_for("RATE"))
    assert isinstance(result, str) and time.monotonic() - started >= 0.95


def test_timeouts_are_retried_and_client_errors_are_not(server):
    llm, url = server()
    with OpenAICompatibleTeacher(url, "m", timeout_s=0.3, backoff_s=0.01) as teacher:
        slow, bad = teacher.explain(requests_for("SLOW", "BAD"))
    assert isinstance(slow, str)
    assert isinstance(bad, TeacherFailure) and "HTTP 400" in bad.reason
    assert sum(1 for entry in llm.log if entry[1] == "BAD") == 1


def test_the_concurrency_limit_is_honoured(server):
    llm, url = server(delay_s=0.1)
    with OpenAICompatibleTeacher(url, "m", concurrency=3) as teacher:
        results = teacher.explain(requests_for(*[f"p{k}" for k in range(12)]))
    assert results == [f"p{k} is a great pick for you, given what you watched." for k in range(12)]
    assert llm.max_in_flight <= 3
    assert llm.max_in_flight >= 2  # and the requests did overlap


def test_a_server_that_keeps_failing_gives_failures(server):
    llm, url = server(fail_after=0)
    with OpenAICompatibleTeacher(url, "m", max_retries=2, backoff_s=0.01) as teacher:
        results = teacher.explain(requests_for("a", "b"))
    assert all(isinstance(r, TeacherFailure) and "3 attempts" in r.reason for r in results)
    assert llm.total == 6


def test_a_server_that_is_not_there_gives_failures():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with OpenAICompatibleTeacher(
        f"http://127.0.0.1:{port}", "m", max_retries=1, backoff_s=0.01
    ) as teacher:
        (result,) = teacher.explain(requests_for("a"))
    assert isinstance(result, TeacherFailure) and "connection error" in result.reason


def test_distill_stops_when_the_endpoint_goes_down_and_keeps_what_it_wrote(server, tmp_path):
    _, url = server(fail_after=8)
    history = tuple(
        Item(f"Film Number {k} (1980)", f"h{k}", {"genres": ["Drama"]}) for k in range(3)
    )
    samples = [
        Sample(f"u{k}", history, Item(f"Picked Film {k} (1985)", str(k), {"genres": ["Drama"]}), k)
        for k in range(20)
    ]
    assert "Recommended movie: Picked Film 0 (1985) (drama)" in format_teacher_prompt(
        DEFAULT_TEMPLATE, samples[0]
    )
    out = tmp_path / "d.jsonl"
    teacher = OpenAICompatibleTeacher(url, "m", max_retries=0, concurrency=4)
    with teacher, pytest.raises(TeacherUnavailableError, match="wrote 8 explanations"):
        distill(samples, teacher, out, batch_size=4, max_consecutive_failures=4, progress=False)
    records = read_distilled(out)
    assert len(records) == 8
    assert records[0].target == "<item> is a great pick for you, given what you watched."


def test_retry_after_parsing():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    now = time.time()
    wait = retry_after_seconds(formatdate(now + 10, usegmt=True), now=now)
    assert wait is not None and 9 <= wait <= 10


def test_answers_stream_back_as_they_arrive_with_no_batch_barrier(server):
    llm, url = server(delay_s=0.05)
    prompts = ["SLOW", *[f"p{k}" for k in range(40)]]
    with OpenAICompatibleTeacher(url, "m", concurrency=16) as teacher:
        order = [request.prompt for request, _ in teacher.stream(iter(requests_for(*prompts)))]
    # The slow answer (1 s) held nothing back: 40 answers went past it, 16 at a time.
    assert sorted(order) == sorted(prompts) and order[-1] == "SLOW"
    assert 12 <= llm.max_in_flight <= 16


def test_the_default_keeps_many_requests_in_flight(server):
    llm, url = server(delay_s=0.2)
    with OpenAICompatibleTeacher(url, "m") as teacher:
        assert teacher.concurrency >= 64
        results = teacher.explain(requests_for(*[f"p{k}" for k in range(80)]))
    assert all(isinstance(r, str) for r in results) and llm.max_in_flight >= 48


def test_the_key_comes_from_the_named_environment_variable(server, monkeypatch):
    llm, url = server()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    monkeypatch.setenv("TGI_TOKEN", "hf-right")
    with OpenAICompatibleTeacher(url, "m", api_key_env="TGI_TOKEN") as teacher:
        teacher.explain(requests_for("a"))
    assert llm.log[0][3] == "Bearer hf-right"


def test_leaving_a_stream_early_stops_asking(server):
    llm, url = server(delay_s=0.05)
    with OpenAICompatibleTeacher(url, "m", concurrency=4) as teacher:
        for k, _ in enumerate(teacher.stream(iter(requests_for(*[f"p{n}" for n in range(200)])))):
            if k == 5:
                break
    time.sleep(0.2)
    assert llm.total < 30  # 6 taken, a few in flight and buffered: not the other 190


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown teacher mode"):
        OpenAICompatibleTeacher("http://h", "m", mode="edits")  # type: ignore[arg-type]
