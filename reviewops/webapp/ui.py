"""Streamlit pieces the pages share: the API client, error display, feedback buttons, word clouds, formats."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from reviewops.config import TIMEZONE, get_settings
from reviewops.webapp import charts
from reviewops.webapp.client import POSITIVE, ApiClient, ApiError, Limits, opposite

log = logging.getLogger(__name__)
T = TypeVar("T")

ADMIN_TOKEN_KEY = "admin_token"
FEEDBACK_KEY = "feedback_sent"


@st.cache_resource(show_spinner=False)
def _client(api_url: str, limits: Limits) -> ApiClient:
    return ApiClient(api_url, limits)


def client() -> ApiClient:
    """The API client for the configured `REVIEWOPS_API_URL` (one per URL, shared by sessions)."""
    settings = get_settings()
    return _client(settings.api.url, Limits.from_settings(settings))


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run an API call; on failure show its Korean message as an error and return None."""
    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        show_error(exc)
        return None


def show_error(exc: ApiError) -> None:
    st.error(exc.message, icon="🚫")
    if exc.detail:
        st.caption(f"API 응답: {exc.detail}")


def require(value: T | None) -> T:
    """Stop the page when a needed API answer is missing (its error is already shown)."""
    if value is None:
        st.stop()
    return value


def percent(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}%}"


def number(x: float | None, fmt: str = ",.0f", unit: str = "") -> str:
    return "-" if x is None else f"{x:{fmt}}{unit}"


def confidence(score: float) -> float:
    return max(score, 1.0 - score)


def sentiment_badge(label: str) -> str:
    return f"{'😀' if label == POSITIVE else '😞'} {label}"


@st.cache_data(show_spinner=False, max_entries=64)
def _wordcloud(items: tuple[tuple[str, float], ...], label: str) -> bytes | None:
    return charts.wordcloud_png(dict(items), label)


def wordcloud(frequencies: Mapping[str, float], label: str, caption: str | None = None) -> None:
    """Show a word cloud of `frequencies` (or a note when there are no words)."""
    items = tuple(sorted(((str(w), float(c)) for w, c in frequencies.items()), key=lambda x: (-x[1], x[0])))
    try:
        png = _wordcloud(items, label)
    except charts.FontMissingError as exc:
        log.warning("%s", exc)
        st.warning("한글 글꼴 패키지(koreanize-matplotlib)가 설치되어 있지 않아 워드클라우드를 그릴 수 없습니다.")
        return
    if png is None:
        st.caption(f"{label} 리뷰에서 뽑을 단어가 없습니다.")
        return
    st.image(png, caption=caption or f"{label} 리뷰 워드클라우드", width="stretch")


def feedback_controls(prediction: Mapping[str, Any], key: str) -> None:
    """👍 / 👎 for one prediction (`{"id", "label", ...}` from /v1/predict), sent to POST /v1/feedback.

    👍 records the predicted label as correct; 👎 records the opposite label as the correct one. After a
    successful send the buttons give way to a confirmation (one feedback per prediction and session)."""
    sent: dict[str, str] = st.session_state.setdefault(FEEDBACK_KEY, {})
    pid, label = str(prediction["id"]), str(prediction["label"])
    if pid in sent:
        _thanks(st, sent[pid])
        return
    slot = st.empty()
    chosen = None
    with slot.container():
        st.caption("예측이 맞았나요? 피드백을 주시면 다음 학습에 반영됩니다.")
        comment = st.text_input("의견 (선택)", key=f"fb-comment-{key}", max_chars=500,
                                placeholder="예: 반어법이라 사실은 부정이에요")
        up_col, down_col = st.columns(2)
        if up_col.button(f"👍 맞아요 ({label})", key=f"fb-up-{key}", width="stretch"):
            chosen = label
        if down_col.button(f"👎 틀려요 (정답: {opposite(label)})", key=f"fb-down-{key}", width="stretch"):
            chosen = opposite(label)
    if chosen is not None:
        answer = call(client().feedback, pid, chosen, comment or None)
        if answer is not None:
            sent[pid] = chosen
            log.info("feedback %s sent for prediction %s", answer.get("id"), pid)
            _thanks(slot, chosen)


def _thanks(where: Any, label: str) -> None:
    where.success(f"피드백을 보냈습니다: 정답은 '{label}'. 모델 개선에 쓰입니다. 감사합니다!", icon="✅")


def admin_token() -> str | None:
    return st.session_state.get(ADMIN_TOKEN_KEY)


def admin_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """`call` for admin actions: a refused token (401) also logs the admin out."""
    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        if exc.status == 401:
            st.session_state.pop(ADMIN_TOKEN_KEY, None)
        show_error(exc)
        return None


def local_time(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A time the API gives (ISO text or datetime; naive means UTC, as the store keeps it) in the users'
    time zone (`config.TIMEZONE`, KST), formatted; "-" for none."""
    ts = local_times(pd.Series([value])).iloc[0]
    return "-" if pd.isna(ts) else f"{ts.strftime(fmt)} KST"


def local_times(values: pd.Series) -> pd.Series:
    """A column of API times as timezone-aware KST timestamps, for tables and chart axes."""
    ts = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    return ts.dt.tz_convert(TIMEZONE)
