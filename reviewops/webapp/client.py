"""HTTP client of the v1 prediction API (see fastapi/README.md): the web app's only way to its data.

Every failure becomes an `ApiError` whose `message` is a Korean sentence meant for the user (the API's
own English `detail`, when there is one, is kept in `detail` and shown as a hint). Requests have
timeouts; `predict` splits long lists into requests the API accepts (at most `max_texts` texts and
well under `max_body_bytes` per request).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlencode

import httpx

from reviewops.config import Settings
from reviewops.data.labels import LABEL_NAMES_KO

log = logging.getLogger(__name__)

LABELS = LABEL_NAMES_KO
POSITIVE, NEGATIVE = LABELS[1], LABELS[0]

# The API refuses more texts than this in one request (REVIEWOPS_API_MAX_TEXTS); the app never sends more.
MAX_TEXTS_PER_REQUEST = 1000


def opposite(label: str) -> str:
    """The other label (a 👎 on a prediction means the correct label is the opposite one)."""
    return NEGATIVE if label == POSITIVE else POSITIVE


class ApiError(Exception):
    """A failed API call; `message` is Korean and safe to show, `detail` is the API's own explanation."""

    def __init__(self, message: str, status: int | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        return self.message if not self.detail else f"{self.message} (상세: {self.detail})"


@dataclass(frozen=True)
class Limits:
    max_texts: int = MAX_TEXTS_PER_REQUEST
    max_text_chars: int = 2000
    max_body_bytes: int = 2_000_000
    max_explain_texts: int = 100  # texts per request that asks for explanations

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(min(settings.api.max_texts, MAX_TEXTS_PER_REQUEST), settings.api.max_text_chars,
                   settings.api.max_body_bytes, settings.api.max_explain_texts)


def _detail(response: httpx.Response) -> str | None:
    """The API's `detail` (a string, or FastAPI's list of validation errors) as one line."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:200] or None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(x) for x in item.get("loc", ()) if x != "body")
                parts.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        return "; ".join(parts) or None
    return str(detail) if detail is not None else None


MESSAGES = {
    401: "관리자 토큰이 올바르지 않습니다. 토큰을 확인하고 다시 로그인하세요.",
    403: "API 서버에 관리자 토큰이 설정되어 있지 않아 관리 기능을 사용할 수 없습니다 (REVIEWOPS_ADMIN_TOKEN).",
    404: "요청한 항목을 찾을 수 없습니다.",
    409: "지금 상태에서는 이 작업을 할 수 없습니다.",
    413: "보낸 데이터가 너무 큽니다. 더 적은 양으로 나누어 다시 시도하세요.",
    422: "입력이 올바르지 않습니다.",
    429: "요청이 너무 많습니다. 잠시 후 다시 시도하세요.",
    503: "모델이 아직 준비되지 않았습니다. 잠시 후 다시 시도하세요.",
}


def _message(status: int, special: dict[int, str] | None = None) -> str:
    """What the app tells a user about an HTTP status (Korean); `special` overrides per call."""
    message = (special or {}).get(status) or MESSAGES.get(status)
    if message:
        return message
    if status >= 500:
        return f"API 서버에서 오류가 발생했습니다 (HTTP {status}). 잠시 후 다시 시도하세요."
    return f"API가 요청을 거절했습니다 (HTTP {status})."


class ApiClient:
    """A synchronous client of the v1 API. Thread-safe (one `httpx.Client`); close it when done."""

    def __init__(self, base_url: str, limits: Limits | None = None, timeout: float = 10.0,
                 predict_timeout: float = 60.0, connect_timeout: float = 3.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.limits = limits or Limits()
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.predict_timeout = httpx.Timeout(predict_timeout, connect=connect_timeout)
        self._http = httpx.Client(base_url=self.base_url, timeout=self.timeout, transport=transport,
                                  headers={"User-Agent": "reviewops-webapp", "Accept": "application/json"})

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiClient:
        return cls(settings.api.url, Limits.from_settings(settings))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ----------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, body: Any = None, token: str | None = None,
                 timeout: httpx.Timeout | None = None, messages: dict[int, str] | None = None) -> Any:
        headers = {}
        content = None
        if body is not None:
            content = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json; charset=utf-8"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = self._http.request(method, path, content=content, headers=headers,
                                          timeout=timeout or self.timeout)
        except httpx.TimeoutException as exc:
            log.warning("API %s %s timed out: %s", method, path, exc)
            raise ApiError(f"API 서버가 제시간에 응답하지 않습니다 ({self.base_url}). "
                           "잠시 후 다시 시도하세요.") from None
        except httpx.TransportError as exc:
            log.warning("API %s %s unreachable: %s", method, path, exc)
            raise ApiError(f"API 서버에 연결할 수 없습니다 ({self.base_url}). 서버가 실행 중인지 확인하세요.") from None
        if response.status_code >= 400:
            detail = _detail(response)
            log.warning("API %s %s answered %d: %s", method, path, response.status_code, detail)
            raise ApiError(_message(response.status_code, messages), response.status_code, detail)
        try:
            return response.json()
        except ValueError:
            raise ApiError("API 서버의 응답을 해석할 수 없습니다 (JSON이 아닙니다).", response.status_code) from None

    # --- prediction ---------------------------------------------------------------------------------

    def check_text(self, text: str) -> str | None:
        """Why the API would refuse this text (a Korean sentence), or None when it is fine. A blank text is
        fine: the API answers it 애매함 with the flag `empty`."""
        if len(text) > self.limits.max_text_chars:
            return f"리뷰가 너무 깁니다 ({len(text):,}자, 최대 {self.limits.max_text_chars:,}자)."
        return None

    def chunks(self, texts: Sequence[str], explain: bool = False) -> Iterator[tuple[int, list[str]]]:
        """(start, texts) per request: at most `max_texts` texts (`max_explain_texts` with `explain`) and ~80%
        of `max_body_bytes`."""
        budget = int(self.limits.max_body_bytes * 0.8)
        most = self.limits.max_explain_texts if explain else self.limits.max_texts
        start, current, size = 0, [], 16
        for i, text in enumerate(texts):
            n = len(json.dumps(text, ensure_ascii=False).encode("utf-8")) + 1
            if current and (len(current) >= most or size + n > budget):
                yield start, current
                start, current, size = i, [], 16
            current.append(text)
            size += n
        if current:
            yield start, current

    def predict(self, texts: Sequence[str], on_progress: Callable[[int, int], None] | None = None,
                explain: bool = False) -> dict:
        """Predictions for `texts`, in order: `{"model": {...}, "predictions": [{"id", "label", "label_id",
        "score", "verdict", "flags"}, ...]}`, with `explanation` (the words that pushed the score, as spans of
        the text) when `explain`. Texts must pass `check_text`; long lists go in several requests."""
        texts = list(texts)
        if not texts:
            raise ApiError("분석할 리뷰가 없습니다.")
        for i, text in enumerate(texts):
            problem = self.check_text(text)
            if problem:
                raise ApiError(problem if len(texts) == 1 else f"{i + 1}번째 리뷰: {problem}")
        predictions: list[dict] = []
        model: dict = {}
        for start, chunk in self.chunks(texts, explain):
            body: dict[str, Any] = {"texts": chunk} | ({"explain": True} if explain else {})
            answer = self._request("POST", "/v1/predict", body=body, timeout=self.predict_timeout)
            got = answer["predictions"]
            if len(got) != len(chunk):
                raise ApiError(f"API가 {len(chunk)}개 리뷰에 {len(got)}개 예측을 돌려주었습니다.")
            predictions.extend(got)
            model = answer["model"]
            if on_progress:
                on_progress(start + len(chunk), len(texts))
        return {"model": model, "predictions": predictions}

    def feedback(self, prediction_id: str, label: str | int, comment: str | None = None,
                 token: str | None = None) -> dict:
        """Feedback on a prediction; a collected review's correction (`scored-…`) needs the admin `token`."""
        body: dict[str, Any] = {"prediction_id": str(prediction_id), "label": label}
        if comment:
            body["comment"] = comment
        return self._request("POST", "/v1/feedback", body=body, token=token,
                             messages={404: "피드백을 저장할 예측을 찾을 수 없습니다 (알 수 없는 예측 ID)."})

    # --- reading ------------------------------------------------------------------------------------

    def health(self) -> dict:
        return self._request("GET", "/healthz")

    def ready(self) -> dict:
        return self._request("GET", "/readyz")

    def model(self) -> dict:
        return self._request("GET", "/v1/model")

    def models(self) -> dict:
        return self._request("GET", "/v1/models")

    def movie_list(self, q: str | None = None, source: str | None = None, crawled: bool | None = None,
                   limit: int | None = None) -> dict:
        """`{"movies", "total", "sources"}`: the movies matching the filters (crawled films first), how many
        match, and every source with its movie count."""
        params = {"q": q or None, "source": source, "crawled": None if crawled is None else str(crawled).lower(),
                  "limit": limit}
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return self._request("GET", f"/v1/movies?{query}" if query else "/v1/movies")

    def movie_summary(self, movie_id: int | str) -> dict:
        return self._request("GET", f"/v1/movies/{movie_id}/summary", messages={404: "선택한 영화를 찾을 수 없습니다."})

    def monitoring(self) -> dict:
        return self._request("GET", "/v1/monitoring")

    # --- admin --------------------------------------------------------------------------------------

    def login(self, token: str) -> dict:
        """Check an admin token. The API has no dedicated check: `POST /v1/admin/reload` is harmless (it
        re-reads the champion alias) and answers 401 for a wrong token."""
        if not token or not token.strip():
            raise ApiError("관리자 토큰을 입력하세요.")
        return self._request("POST", "/v1/admin/reload", token=token.strip(), timeout=self.predict_timeout)

    def promote(self, version: str | int, token: str) -> dict:
        return self._request("POST", "/v1/admin/promote", body={"version": str(version)}, token=token,
                             timeout=self.predict_timeout,
                             messages={404: f"모델 버전 v{version}을(를) 찾을 수 없습니다."})

    def rollback(self, token: str) -> dict:
        return self._request("POST", "/v1/admin/rollback", token=token, timeout=self.predict_timeout,
                             messages={409: "되돌릴 이전 챔피언이 없습니다."})
