"""A client for any OpenAI-compatible chat endpoint (OpenAI, vLLM, `transformers serve`, ...).

What the raters need from it, and nothing more:
- the key comes from an environment variable named in config (never from the config file) and is
  never logged or put into an error message;
- several requests in flight (threads), an optional cap on requests per second;
- bounded retries with exponential backoff on 429, 408, 5xx, timeouts and refused connections
  (a Retry-After header is honoured, capped like the backoff);
- a response cache on disk: one JSON line per answered request, appended under a file lock with a
  single write, keyed by endpoint + model + messages + sampling parameters. An answer is cached the
  moment it arrives, so a rerun or a crash never pays for it twice; a torn last line (a crash
  mid-write) is skipped when the cache is read.
- clear errors: an unreachable endpoint or a refused key names the base URL, the model and the
  environment variable, and the config section they come from.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import requests

logger = logging.getLogger(__name__)


RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))


class EndpointError(RuntimeError):
    """The endpoint cannot be used: unreachable, retries exhausted, a refused request."""


class AuthError(EndpointError):
    """The endpoint refused the key (HTTP 401/403), or the key's environment variable is unset."""


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key_env: str | None = None
    section: str = "llm_api"  # the config key it came from, for error messages

    def describe(self) -> str:
        key = f"key from ${self.api_key_env}" if self.api_key_env else "no key"
        return f"{self.section}: model {self.model!r} at {self.base_url} ({key})"

    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise AuthError(f"{self.section}.api_key_env: the environment variable {self.api_key_env} is not "
                            f"set (or empty); it must hold the key for {self.base_url} (model {self.model!r}). "
                            f"Set api_key_env: null for a server that needs no key.")
        return key


def endpoint_from_settings(settings: dict, section: str) -> Endpoint:
    for key in ("base_url", "model"):
        if not settings.get(key):
            raise EndpointError(f"{section}.{key}: missing")
    base_url = str(settings["base_url"])
    if not base_url.startswith(("http://", "https://")):
        raise EndpointError(f"{section}.base_url: {base_url!r} is not an http(s) URL")
    return Endpoint(base_url, str(settings["model"]), settings.get("api_key_env"), section)


def request_key(endpoint: Endpoint, messages: Sequence[dict], params: dict) -> str:
    """What identifies an answer: endpoint, model, messages, sampling parameters (not the key)."""
    payload = {"base_url": endpoint.base_url.rstrip("/"), "model": endpoint.model,
               "messages": list(messages), "params": params}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ResponseCache:
    """Answers on disk, one JSON line per request: {"key", "model", "content", "finish_reason"}."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = {}
        self.torn_lines = 0
        if self.path.exists():
            with open(self.path, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                        self._entries[record["key"]] = record
                    except (json.JSONDecodeError, KeyError, TypeError):
                        self.torn_lines += 1  # a crash mid-append; that request is simply asked again
        if self.torn_lines:
            logger.warning("%s: skipped %d unreadable line(s)", self.path, self.torn_lines)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> dict | None:
        return self._entries.get(key)

    def put(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            # O_APPEND + one write + an exclusive lock: jobs sharing the file never interleave lines
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the lock
            self._entries[record["key"]] = record


class RateLimiter:
    """At most `per_second` request starts per second across all threads (None: no limit)."""

    def __init__(self, per_second: float | None):
        self.interval = 1.0 / per_second if per_second else 0.0
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        time.sleep(max(0.0, start - now))


class ChatClient:
    """Chat completions with cache, concurrency, rate limit and bounded retries.

    `stats`: requests sent over the network (every attempt), answers taken from the cache, retries.
    """

    def __init__(self, endpoint: Endpoint, cache_path: str | os.PathLike, *, concurrency: int = 4,
                 requests_per_second: float | None = None, max_retries: int = 5, backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, timeout_s: float = 120.0):
        self.endpoint = endpoint
        self.cache = ResponseCache(cache_path)
        self.concurrency = max(1, int(concurrency))
        self.limiter = RateLimiter(requests_per_second)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.timeout_s = float(timeout_s)
        self.stats = {"requests_sent": 0, "cache_hits": 0, "retries": 0}
        self._stats_lock = threading.Lock()
        self._local = threading.local()
        self._key = endpoint.api_key()  # fails now, before any request, when the variable is unset

    @classmethod
    def from_settings(cls, settings: dict, section: str) -> "ChatClient":
        return cls(endpoint_from_settings(settings, section), settings["cache"],
                   concurrency=settings.get("concurrency", 4),
                   requests_per_second=settings.get("requests_per_second"),
                   max_retries=settings.get("max_retries", 5), backoff_s=settings.get("backoff_s", 1.0),
                   max_backoff_s=settings.get("max_backoff_s", 60.0), timeout_s=settings.get("timeout_s", 120.0))

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self.stats[name] += 1

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _delay(self, attempt: int, response: requests.Response | None) -> float:
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff_s)
            except ValueError:
                pass  # an HTTP date: fall back to the backoff
        return min(self.backoff_s * 2 ** attempt, self.max_backoff_s)

    def _post(self, payload: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        where = self.endpoint.describe()
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._count("retries")
            self.limiter.wait()
            self._count("requests_sent")
            response = None
            try:
                response = self._session().post(self.endpoint.chat_url(), json=payload, headers=headers,
                                                timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as error:
                last = f"cannot reach the endpoint ({type(error).__name__})"
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        raise EndpointError(f"{where}: HTTP 200 but the body is not JSON: "
                                            f"{response.text[:200]!r}") from None
                if response.status_code in (401, 403):
                    hint = (f"check the key in ${self.endpoint.api_key_env}" if self.endpoint.api_key_env
                            else "this endpoint needs a key: set api_key_env to the variable that holds it")
                    raise AuthError(f"{where}: HTTP {response.status_code}, the key was refused; {hint}")
                if response.status_code not in RETRY_STATUSES:
                    raise EndpointError(f"{where}: HTTP {response.status_code}: {response.text[:300]!r}")
                last = f"HTTP {response.status_code}"
            if attempt < self.max_retries:
                delay = self._delay(attempt, response)
                logger.warning("%s: %s; retry %d of %d in %.1f s", where, last, attempt + 1, self.max_retries, delay)
                time.sleep(delay)
        raise EndpointError(f"{where}: gave up after {self.max_retries + 1} attempts, last: {last}. "
                            f"Is the server running and {self.endpoint.section}.base_url right? "
                            f"Answers received so far are kept in {self.cache.path}; a rerun asks only the rest.")

    def complete(self, messages: Sequence[dict], params: dict) -> str:
        """The assistant's answer to one conversation (from the cache when it was asked before)."""
        key = request_key(self.endpoint, messages, params)
        cached = self.cache.get(key)
        if cached is not None:
            self._count("cache_hits")
            return cached["content"]
        body = self._post({"model": self.endpoint.model, "messages": list(messages), **params})
        try:
            choice = body["choices"][0]
            content = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise EndpointError(f"{self.endpoint.describe()}: the answer has no choices[0].message: "
                                f"{json.dumps(body)[:300]}") from None
        self.cache.put({"key": key, "model": self.endpoint.model, "content": content,
                        "finish_reason": choice.get("finish_reason")})
        return content

    def complete_many(self, conversations: Sequence[Sequence[dict]], params: dict) -> list[str]:
        """Answers in the order of `conversations`, `concurrency` requests in flight. The first error
        stops the run (pending requests are cancelled); every answer already received stays cached."""
        if not conversations:
            return []
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self.complete, messages, params) for messages in conversations]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                for future in futures:
                    future.cancel()
                raise failed.exception()
            return [future.result() for future in futures]
