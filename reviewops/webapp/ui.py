"""Streamlit pieces the pages share: the API client, error display, feedback buttons, word clouds, formats."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from reviewops.config import get_settings
from reviewops.data.labels import SOURCE_NAMES, VERDICT_UNCERTAIN
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


def sentiment_badge(label: str | None) -> str:
    """A label or verdict with its face: 긍정, 부정 or 애매함 (the model does not know); "-" for a row that was
    not sent (too long for the API), which the model never saw."""
    if not label:
        return "-"
    if label == POSITIVE:
        return f"😀 {label}"
    if label == VERDICT_UNCERTAIN:
        return f"🤔 {VERDICT_UNCERTAIN}"
    return f"😞 {label}"


def certainty(prediction: Mapping[str, Any]) -> str:
    """How sure the model is, in words a user can act on: 애매함 for an uncertain verdict (never a
    "100%" on a review the model cannot read), else the confidence max(p, 1-p) as a percentage."""
    score = prediction.get("score")
    if prediction.get("verdict") == VERDICT_UNCERTAIN or score is None:
        return VERDICT_UNCERTAIN
    return percent(confidence(float(score)))


# --- why this label: highlighted words -------------------------------------------------------------------

HIGHLIGHT_RGB = {POSITIVE: (22, 163, 74), "부정": (220, 38, 38)}  # green pushes toward 긍정, red toward 부정


def highlight(text: str, spans: Sequence[Mapping[str, Any]] | None, top: int = 12) -> str:
    """`text` as HTML (escaped) with the API's explanation spans marked: green for words that pushed the
    score toward 긍정, red toward 부정, stronger for larger weights. Only the `top` spans by |weight| are
    marked, so that a long review shows what mattered."""
    spans = sorted((s for s in spans or () if s.get("weight")), key=lambda s: -abs(float(s["weight"])))[:top]
    strongest = max((abs(float(s["weight"])) for s in spans), default=0.0)
    out, at = [], 0
    for span in sorted(spans, key=lambda s: int(s["start"])):
        start, end, weight = int(span["start"]), int(span["end"]), float(span["weight"])
        if start < at or end <= start or end > len(text):
            continue  # overlapping or out of range: leave the text as it is
        r, g, b = HIGHLIGHT_RGB[POSITIVE if weight > 0 else "부정"]
        alpha = 0.2 + 0.6 * abs(weight) / strongest
        direction = "긍정" if weight > 0 else "부정"
        out.append(html.escape(text[at:start]))
        out.append(f'<mark style="background-color: rgba({r},{g},{b},{alpha:.2f}); padding: 0 2px; '
                   f'border-radius: 3px" title="{direction} 쪽으로 {abs(weight):.2f}">'
                   f"{html.escape(text[start:end])}</mark>")
        at = end
    out.append(html.escape(text[at:]))
    return "".join(out).replace("\n", "<br>")


HIGHLIGHT_LEGEND = ('<span style="background-color: rgba(22,163,74,0.5); padding: 0 4px">초록</span>은 긍정 쪽으로, '
                    '<span style="background-color: rgba(220,38,38,0.5); padding: 0 4px">빨강</span>은 부정 쪽으로 '
                    "판정을 민 단어입니다 (진할수록 크게).")


def show_highlight(text: str, spans: Sequence[Mapping[str, Any]] | None) -> None:
    """One review with its deciding words highlighted, and the colour legend."""
    st.markdown(f'<div style="line-height: 1.9; font-size: 1.05rem">{highlight(text, spans)}</div>',
                unsafe_allow_html=True)
    st.caption(HIGHLIGHT_LEGEND, unsafe_allow_html=True)


def highlight_table(rows: pd.DataFrame, spans: Sequence[Sequence[Mapping[str, Any]] | None]) -> str:
    """An HTML table of upload rows (`id`, `verdict`, `document`) with each review's words highlighted."""
    cells = []
    for (_, row), row_spans in zip(rows.iterrows(), spans, strict=True):
        cells.append(f"<tr><td>{html.escape(str(row['id']))}</td><td>{html.escape(sentiment_badge(row['verdict']))}"
                     f"</td><td>{highlight(str(row['document']), row_spans)}</td></tr>")
    return ('<table style="width: 100%"><thead><tr><th>ID</th><th>판정</th><th>리뷰 (근거 단어 표시)</th></tr>'
            f"</thead><tbody>{''.join(cells)}</tbody></table>")


# --- the model in Korean ---------------------------------------------------------------------------------

METRIC_NAMES = {"accuracy": "정확도", "f1": "F1", "roc_auc": "ROC AUC", "log_loss": "로그 손실", "n": "평가 리뷰 수"}
TRAINER_NAMES = {"baseline": "선형 (TF-IDF)", "stack": "스태킹", "transformer": "트랜스포머"}  # short: a metric's width
BACKEND_NAMES = {"baseline": "선형 모델", "stack": "스태킹 모델", "transformer": "트랜스포머 (PyTorch)",
                 "onnx-int8": "트랜스포머 (ONNX int8)"}
DECISION_NAMES = {"champion": "챔피언", "challenger": "도전자", "rolled_back": "롤백됨"}
SLICE_NAMES = {"len_lt20": "짧은 리뷰 (20자 미만)", "len_20_60": "중간 리뷰 (20~60자)",
               "len_ge60": "긴 리뷰 (60자 이상)"}
BEHAVIOUR_NAMES = {"negation": "부정문", "double_negation": "이중 부정", "sarcasm": "반어·비꼼", "mixed": "복합 감정",
                   "intensifier": "강조 표현", "typo_slang": "오타·은어"}


def trainer_name(trainer: str | None) -> str:
    return TRAINER_NAMES.get(trainer or "", trainer or "-")


def metric_name(key: str) -> str:
    """A run metric's Korean name: overall (`accuracy`), per slice (`slice.len_lt20.accuracy`, `slice.source_cgv.f1`)
    or on the behavioural set (`behaviour.negation.accuracy`)."""
    group, _, rest = key.partition(".")
    if group == "slice" and rest:
        part, _, metric = rest.rpartition(".")
        source = part.removeprefix("source_")
        where = SLICE_NAMES.get(part) or (f"출처 {SOURCE_NAMES.get(source, source)}" if source != part else part)
        return f"{where} · {METRIC_NAMES.get(metric, metric)}"
    if group == "behaviour" and rest:
        part, _, metric = rest.rpartition(".")
        if not part:  # the whole set
            return "행동 테스트 사례 수" if metric == "n" else f"행동 테스트 전체 · {METRIC_NAMES.get(metric, metric)}"
        return f"행동 테스트 {BEHAVIOUR_NAMES.get(part, part)} · {METRIC_NAMES.get(metric, metric)}"
    return METRIC_NAMES.get(key, key)


def gate_reason(code: str, args: Mapping[str, Any], decision: str = "") -> str:
    """Why the gate (or an admin) decided, in Korean, from the decision's code and figures (the English
    `reason` is for logs and MLflow)."""
    a = dict(args)
    metric = METRIC_NAMES.get(str(a.get("metric", "")), str(a.get("metric", "")))

    def f4(key: str) -> str:
        return f"{float(a[key]):.4f}"

    try:
        return _GATE_REASONS[code](a, metric, f4)
    except (KeyError, TypeError, ValueError):
        # a version gated before codes were recorded, or a code this app does not know
        return f"{DECISION_NAMES.get(decision, '결정')} (자세한 사유는 MLflow에 기록되어 있습니다)" if decision else "-"


_GATE_REASONS: dict[str, Callable[[dict, str, Callable[[str], str]], str]] = {
    "below_floor": lambda a, m, f: f"{m} {f('candidate')}이(가) 최저 기준 {f('floor')}에 못 미칩니다.",
    "over_budget_batch": lambda a, m, f: (f"서빙 비용 초과: 배치 처리량 {float(a['batch_rps']):,.0f}리뷰/초가 "
                                          f"기준 {float(a['limit']):,.0f}리뷰/초보다 느립니다."),
    "over_budget_p99": lambda a, m, f: (f"서빙 비용 초과: 단건 지연 p99 {float(a['single_p99_ms']):,.1f} ms가 "
                                        f"기준 {float(a['limit']):,.1f} ms를 넘습니다."),
    "champion_unscored": lambda a, m, f: ("현재 챔피언을 평가하지 못해 자동으로 승격하지 않았습니다. "
                                          "확인 후 직접 승격하세요."),
    "first_model": lambda a, m, f: f"첫 모델: {m} {f('candidate')}이(가) 최저 기준 {f('floor')}을(를) 넘습니다.",
    "beats_champion": lambda a, m, f: (f"{m} {f('candidate')}이(가) 챔피언의 {f('champion')}보다 "
                                       f"{float(a['delta']):+.4f} 높습니다 (필요한 차이 {f('margin')})."),
    "within_margin": lambda a, m, f: (f"{m} {f('candidate')} 대 챔피언 {f('champion')}: "
                                      f"차이 {float(a['delta']):+.4f}이(가) 필요한 차이 {f('margin')}에 못 미칩니다."),
    "manual_promote": lambda a, m, f: "관리자가 직접 챔피언으로 승격했습니다.",
    "rolled_back": lambda a, m, f: f"v{a['to']}(으)로 롤백되었습니다.",
}


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
    ts = charts.local_times(pd.Series([value])).iloc[0]
    return "-" if pd.isna(ts) else f"{ts.strftime(fmt)} KST"
