"""LLM raters behind an OpenAI-compatible endpoint (llm_client.py, llm_raters.py).

The workflow runs against a real local server: `transformers serve` (Transformers' own
OpenAI-compatible server) on the packaged SmolLM2, on 127.0.0.1 and a free port. The similarity
method llm_api runs end to end through Snakemake, with the server killed part-way: the job stops
with a clear error, the cache keeps every answer received, and after a restart the rerun asks the
server for exactly the answers that are missing (counted in the server's own access log). The LLM
judge rule rates a hand-made items.csv against the same server.

Error paths need answers a real model does not give on demand (401, 429 then 200, 503 forever,
prose): a small HTTP server of the test's own gives them; the client code under test is the same.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml

from conftest import REPO, TINY_CONFIG, snakemake
from empathy_workflow.core import llm_scoring
from empathy_workflow.empo import llm_judge
from empathy_workflow.similarity import api
from empathy_workflow.core.io import InputError
from empathy_workflow.core.llm_client import AuthError, ChatClient, Endpoint, EndpointError, ResponseCache, request_key

SERVER_START_TIMEOUT = 240  # seconds: loading SmolLM2 on a busy 2-core machine
ANSWERED = re.compile(r'"POST /v1/chat/completions HTTP/1\.1" 200')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# A real server: transformers serve


class TransformersServer:
    """`transformers serve MODEL` on 127.0.0.1:port; its access log counts the answered requests."""

    def __init__(self, model: Path, port: int, log_path: Path):
        self.model, self.port, self.log_path = model, port, log_path
        self.process = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "TransformersServer":
        command = [str(Path(sys.executable).parent / "transformers"), "serve", str(self.model), "--host", "127.0.0.1",
                   "--port", str(self.port), "--device", "cpu", "--log-level", "info"]
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"transformers serve did not start in {SERVER_START_TIMEOUT} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # as a crash would: no graceful shutdown
            self.process.wait(timeout=30)
        if self.process is not None:
            self._log.close()

    def answered(self) -> int:
        return len(ANSWERED.findall(self.log_path.read_text()))


@pytest.fixture(scope="module")
def policy(prepared_models) -> Path:
    return prepared_models / "policy"


def endpoint_config(base_url: str, model: str, cache: str, **extra) -> dict:
    return {"base_url": base_url, "model": model, "api_key_env": None, "cache": cache, "temperature": 0.0,
            "max_tokens": 4, "seed": 0, "parse_with_llm": False, "concurrency": 2, "max_retries": 2,
            "backoff_s": 0.2, "max_backoff_s": 1.0, "timeout_s": 120.0, **extra}


@pytest.fixture
def leaves_the_tiny_run_as_it_was(workflow_dir):
    """These tests add a method and a human evaluation to the shared tiny run (workflow_dir);
    they take them away again, so that the tests of the tiny run's outputs see only its own."""
    yield
    for added in ("results/similarity/llm_api", "results/empo/human_eval", "results/cache/llm_api_test.jsonl"):
        path = workflow_dir / added
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def test_llm_api_against_transformers_serve_survives_a_server_killed_mid_run(policy, workflow_dir, tmp_path, leaves_the_tiny_run_as_it_was):
    """End to end through Snakemake; the server dies part-way; the rerun pays only for the rest."""
    pairs = 3
    cache = workflow_dir / "results" / "cache" / "llm_api_test.jsonl"
    cache.unlink(missing_ok=True)
    port = free_port()
    settings = endpoint_config(f"http://127.0.0.1:{port}/v1", str(policy), str(cache))
    overrides = tmp_path / "llm_api.yaml"
    overrides.write_text(yaml.safe_dump({"similarity": {"methods": ["llm_api"], "test_sets": ["empathic_stories_test"],
                                                        "max_test_pairs": pairs, "llm_api": settings}}))
    target = "results/similarity/llm_api/empathic_stories_test/metrics.json"
    # the inputs first, so that the run below starts asking at once
    snakemake(workflow_dir, "--cores", "1", "results/data/empathic_stories/test.csv",
              "results/data/empathic_stories/train.csv", configfiles=[TINY_CONFIG])

    first = TransformersServer(policy, port, tmp_path / "serve1.log").start()
    command = [sys.executable, "-m", "snakemake", "-s", str(Path(__file__).parents[1] / "Snakefile"),
               "--directory", str(workflow_dir), "--configfile", str(TINY_CONFIG), str(overrides),
               "--cores", "1", target]
    run = subprocess.Popen(command, cwd=workflow_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=dict(os.environ, HF_HUB_OFFLINE="1"))
    try:
        deadline = time.monotonic() + 300
        while not (cache.exists() and cache.read_text().count("\n") >= 1):  # the first answer is in
            assert run.poll() is None, run.stdout.read()[-5000:]
            assert time.monotonic() < deadline, "no answer within 300 s"
            time.sleep(0.05)
    finally:
        first.stop()
    output, _ = run.communicate(timeout=300)
    assert run.returncode != 0, "the run should fail once the server is gone"
    log = (workflow_dir / "results/logs/similarity/predict_llm_api_empathic_stories_test.log").read_text()
    assert f"http://127.0.0.1:{port}/v1" in log and "gave up after 3 attempts" in log, log[-3000:]
    assert not (workflow_dir / target).exists()  # no half-written outputs
    kept = len(ResponseCache(cache))
    assert 1 <= kept < 2 * pairs
    assert first.answered() >= kept

    second = TransformersServer(policy, port, tmp_path / "serve2.log").start()
    try:
        snakemake(workflow_dir, "--cores", "1", target, configfiles=[TINY_CONFIG, overrides])
    finally:
        second.stop()
    assert second.answered() == 2 * pairs - kept  # answered requests were not sent again
    metrics = json.loads((workflow_dir / target).read_text())
    assert metrics["requests"]["cache_hits"] == kept
    assert metrics["requests"]["requests_sent"] == 2 * pairs - kept
    assert metrics["answers"] == 2 * pairs
    assert metrics["n"] == pairs - metrics["pairs_without_score"]
    assert metrics["endpoint"]["model"] == str(policy)
    predictions = pd.read_csv(workflow_dir / "results/similarity/llm_api/empathic_stories_test/predictions.csv")
    assert len(predictions) == pairs
    both = predictions.dropna(subset=["score_ab", "score_ba"])
    assert (both.predicted == (both.score_ab + both.score_ba) / 2).all()


def test_llm_judge_rule_rates_items_on_each_dimension(policy, workflow_dir, tmp_path, leaves_the_tiny_run_as_it_was):
    """Rule empo_llm_judge on a hand-made items.csv (the contract of rule empo_human_sheets)."""
    items_dir = workflow_dir / "results" / "empo" / "human_eval"
    items_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"item_id": ["i1", "i2"], "conv_id": ["c1", "c2"],
                  "prompt": ["My dog died last week and the house feels empty.", "I finally passed my exam!"],
                  "reply": ["I am so sorry. Losing a companion hurts.", "Congratulations, that is wonderful news!"]}
                 ).to_csv(items_dir / "items.csv", index=False)
    port = free_port()
    dimensions = {"empathy": {"min": 1, "max": 5, "label": "empathy"},
                  "fluency": {"min": 1, "max": 5, "label": "fluency"}}
    overrides = tmp_path / "judge.yaml"
    # the human evaluation's own settings (the judge rates its items), with our dimensions and judge
    human_eval = yaml.safe_load((REPO / "configs" / "human_eval.yaml").read_text())["empo"]["human_eval"]
    human_eval.update(dimensions=dimensions, llm_judge=endpoint_config(
        f"http://127.0.0.1:{port}/v1", str(policy), str(tmp_path / "judge_cache.jsonl")))
    overrides.write_text(yaml.safe_dump({"empo": {"human_eval": human_eval}}))
    server = TransformersServer(policy, port, tmp_path / "serve.log").start()
    try:
        # only the judge: the hand-made items.csv stands in for rule empo_human_sheets' output
        snakemake(workflow_dir, "--cores", "1", "results/empo/human_eval/llm_judge_ratings.csv",
                  "--allowed-rules", "empo_llm_judge", configfiles=[TINY_CONFIG, overrides])
    finally:
        server.stop()
    assert server.answered() == 4
    ratings = pd.read_csv(items_dir / "llm_judge_ratings.csv")
    summary = json.loads((items_dir / "llm_judge_summary.json").read_text())
    assert list(ratings.columns) == ["item_id", "annotator", "dimension", "score"]
    # SmolLM2-135M mostly answers prose here ("Your response is ..."): counted, logged, left out
    assert len(ratings) + sum(summary["unparsable_answers"].values()) == 4
    assert set(ratings.annotator) <= {"llm_judge"} and set(ratings.dimension) <= set(dimensions)
    assert ratings.score.between(1, 5).all()
    assert summary["requests"]["requests_sent"] == 4 and summary["endpoint"]["base_url"].endswith(f":{port}/v1")


def test_judge_ratings_long_format_and_unparsable_counts(tmp_path):
    def answer(body):
        user = body["messages"][-1]["content"]
        if "on fluency" in user:
            return "6" if "sorry" in user else "It reads well."  # off the scale / prose
        return "4" if "sorry" in user else "2"

    items = pd.DataFrame({"item_id": ["i1", "i2"], "conv_id": ["c1", "c2"], "prompt": ["My dog died.", "I won!"],
                          "reply": ["I am so sorry.", "Nice."]})
    dimensions = {"empathy": {"min": 1, "max": 5, "label": "empathy"},
                  "fluency": {"min": 1, "max": 5, "label": "fluency"}}
    with FakeEndpoint([(200, answer)]) as fake:
        ratings, details = llm_judge.judge_ratings(items, dimensions,
                                                    endpoint_config(fake.base_url, "m", str(tmp_path / "c.jsonl")))
    assert ratings.values.tolist() == [["i1", "llm_judge", "empathy", 4.0], ["i2", "llm_judge", "empathy", 2.0]]
    assert details["unparsable_answers"] == {"empathy": 0, "fluency": 2}


# ---------------------------------------------------------------------------------------------
# Error paths: a small server of the test's own


class FakeEndpoint:
    """Answers from a script: each request takes the next (status, content) of `script`, the last
    one repeating. Records the headers it received."""

    def __init__(self, script, retry_after: str | None = "0"):
        self.script, self.retry_after = list(script), retry_after
        self.received = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.received.append({"authorization": self.headers.get("Authorization"), "body": body})
                status, content = outer.script[min(len(outer.received), len(outer.script)) - 1]
                if callable(content):
                    content = content(body)
                payload = json.dumps({"choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": content}}]}
                                     if status == 200 else {"error": {"message": content}}).encode()
                self.send_response(status)
                if status == 429 and outer.retry_after is not None:
                    self.send_header("Retry-After", outer.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def client(base_url, tmp_path, api_key_env=None, **kwargs) -> ChatClient:
    options = dict(max_retries=3, backoff_s=0.01, max_backoff_s=0.05, timeout_s=10)
    options.update(kwargs)
    return ChatClient(Endpoint(base_url, "some-model", api_key_env, "similarity.llm_api"), tmp_path / "cache.jsonl",
                      **options)


MESSAGES = [{"role": "user", "content": "Rate 1-4."}]


def test_retries_on_429_and_5xx_then_answers(tmp_path):
    with FakeEndpoint([(429, "slow down"), (503, "busy"), (200, "3")]) as fake:
        chat = client(fake.base_url, tmp_path)
        assert chat.complete(MESSAGES, {"max_tokens": 4}) == "3"
    assert len(fake.received) == 3
    assert chat.stats == {"requests_sent": 3, "cache_hits": 0, "retries": 2}


def test_retries_are_bounded(tmp_path):
    with FakeEndpoint([(503, "down")]) as fake:
        chat = client(fake.base_url, tmp_path, max_retries=2)
        with pytest.raises(EndpointError, match=r"gave up after 3 attempts, last: HTTP 503"):
            chat.complete(MESSAGES, {})
    assert len(fake.received) == 3
    assert len(ResponseCache(tmp_path / "cache.jsonl")) == 0  # an error is never cached as an answer


def test_backoff_grows_and_honours_retry_after(tmp_path):
    chat = client("http://127.0.0.1:9/v1", tmp_path, backoff_s=0.5, max_backoff_s=3.0)
    assert [chat._delay(attempt, None) for attempt in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    response = requests.Response()
    response.headers["Retry-After"] = "2"
    assert chat._delay(0, response) == 2.0
    response.headers["Retry-After"] = "120"
    assert chat._delay(0, response) == 3.0  # capped


def test_wrong_key_is_a_clear_error_without_the_key(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TEST_LLM_KEY", "sk-secret-123")
    with FakeEndpoint([(401, "invalid api key")]) as fake:
        chat = client(fake.base_url, tmp_path, api_key_env="TEST_LLM_KEY")
        with pytest.raises(AuthError) as error:
            chat.complete(MESSAGES, {})
    assert fake.received[0]["authorization"] == "Bearer sk-secret-123"
    assert len(fake.received) == 1  # a refused key is not retried
    message = str(error.value)
    for part in ("HTTP 401", fake.base_url, "some-model", "$TEST_LLM_KEY", "similarity.llm_api"):
        assert part in message
    assert "sk-secret-123" not in message + caplog.text


def test_unset_key_variable_fails_before_any_request(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_LLM_KEY", raising=False)
    with pytest.raises(AuthError, match=r"TEST_LLM_KEY is not set"):
        client("http://127.0.0.1:9/v1", tmp_path, api_key_env="TEST_LLM_KEY")


def test_unreachable_endpoint_names_url_and_model(tmp_path):
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    chat = client(base_url, tmp_path, max_retries=2)
    with pytest.raises(EndpointError) as error:
        chat.complete(MESSAGES, {})
    message = str(error.value)
    assert base_url in message and "some-model" in message and "cannot reach the endpoint" in message
    assert chat.stats["requests_sent"] == 3


def test_cache_answers_once_and_tolerates_a_torn_line(tmp_path):
    with FakeEndpoint([(200, lambda body: body["messages"][-1]["content"][-2:])]) as fake:
        chat = client(fake.base_url, tmp_path)
        conversations = [[{"role": "user", "content": f"question {i:02d}"}] for i in range(6)]
        assert chat.complete_many(conversations, {"max_tokens": 4}) == [f"{i:02d}" for i in range(6)]
        with open(tmp_path / "cache.jsonl", "a") as handle:
            handle.write('{"key": "torn')  # a crash mid-append
        again = client(fake.base_url, tmp_path)
        assert again.cache.torn_lines == 1
        assert again.complete_many(conversations, {"max_tokens": 4}) == [f"{i:02d}" for i in range(6)]
        assert again.stats["cache_hits"] == 6 and again.stats["requests_sent"] == 0
        assert again.complete(conversations[0], {"max_tokens": 5}) == "00"  # other params: asked anew
    assert len(fake.received) == 7
    endpoint = Endpoint("http://a/v1", "m")
    assert request_key(endpoint, MESSAGES, {}) != request_key(Endpoint("http://a/v1", "n"), MESSAGES, {})


def test_prose_answers_are_counted_unparsable_never_zero(tmp_path, caplog):
    """One story order answers prose: the pair keeps the other order's score; a pair with prose in
    both orders has no prediction; all counted in the details and logged."""
    def answer(body):
        user = body["messages"][-1]["content"]
        if "Narrative A: third" in user or "Narrative A: second" in user:
            return "These narrators would surely understand each other deeply."
        return "I would say 3 - very much."

    test = pd.DataFrame({"pair_id": ["p1", "p2", "p3"], "text_a": ["first", "second", "third"],
                         "text_b": ["one", "two", "third"], "gold": [3.0, 2.0, 1.0]})
    with FakeEndpoint([(200, answer)]) as fake:
        settings = endpoint_config(fake.base_url, "some-model", str(tmp_path / "c.jsonl"))
        frame, details = api.api_similarity_predictions(test, settings)
    assert details["unparsable_answers"] == 3 and details["pairs_without_score"] == 1
    assert frame.predicted.tolist()[:2] == [3.0, 3.0] and pd.isna(frame.predicted.iloc[2])
    assert "3 of 6 answers hold no score" in caplog.text
    with FakeEndpoint([(200, "No idea, they are stories.")]) as fake:
        settings = endpoint_config(fake.base_url, "some-model", str(tmp_path / "d.jsonl"))
        with pytest.raises(InputError, match="none of the 6 answers"):
            api.api_similarity_predictions(test, settings)


def test_parse_request_follows_the_authors(tmp_path):
    """parse_with_llm: the analysis goes back to the model with the authors' parse prompt."""
    def answer(body):
        user = body["messages"][-1]["content"]
        return "4" if user.startswith("This is a rater's analysis") else "Both feel lonely; quite similar."

    test = pd.DataFrame({"pair_id": ["p1"], "text_a": ["a"], "text_b": ["b"], "gold": [3.0]})
    with FakeEndpoint([(200, answer)]) as fake:
        settings = endpoint_config(fake.base_url, "m", str(tmp_path / "c.jsonl"), parse_with_llm=True)
        frame, details = api.api_similarity_predictions(test, settings)
    assert frame.predicted.tolist() == [4.0] and len(fake.received) == 4
    assert "Both feel lonely" in fake.received[-1]["body"]["messages"][-1]["content"]


@pytest.mark.parametrize("answer, expected", [
    ("3", 3.0), ("I'd rate it a 3, very much.", 3.0), ("Score: 2.5", 2.5), ("10 out of 10", None),
    ("The year 2024 was hard; 4.", 4.0), ("They would empathize.", None), ("", None), ("3.", 3.0),
])
def test_parse_score(answer, expected):
    assert llm_scoring.parse_score(answer, 1, 4) == expected


def test_default_config_needs_no_endpoint(repo):
    """make run stays offline: neither the API method nor the LLM judge is on by default."""
    config = yaml.safe_load((repo / "config.yaml").read_text())
    assert "llm_api" not in config["similarity"]["methods"]
    assert (config["empo"]["human_eval"] or {}).get("llm_judge") is None
    documented = yaml.safe_load((repo / "configs" / "llm_api.yaml").read_text())
    assert "llm_api" in documented["similarity"]["methods"] and documented["empo"]["human_eval"]["llm_judge"]
    for section in (documented["similarity"]["llm_api"], documented["empo"]["human_eval"]["llm_judge"]):
        assert set(section) & {"api_key", "key", "token"} == set()  # only the variable's name
