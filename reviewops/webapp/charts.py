"""Charts of the web app (altair) and word clouds (wordcloud, with a Korean font that ships with a package).

Every chart function takes plain lists/frames as the API returns them and gives an `alt.Chart`; labels and
axis titles are Korean. Word clouds use NanumGothic from the `koreanize-matplotlib` wheel, found by path
(the package is never imported: importing it restyles matplotlib globally).
"""

from __future__ import annotations

import importlib.util
import io
import zlib
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import altair as alt
import pandas as pd

from reviewops.data.labels import VERDICT_UNCERTAIN as UNCERTAIN
from reviewops.webapp.client import NEGATIVE, POSITIVE

FONT_PACKAGE = "koreanize_matplotlib"
FONT_FILE = "NanumGothic.ttf"
POSITIVE_COLOR = "#2563eb"
NEGATIVE_COLOR = "#dc2626"
SENTIMENT_SCALE = alt.Scale(domain=[POSITIVE, NEGATIVE], range=[POSITIVE_COLOR, NEGATIVE_COLOR])
UNCERTAIN_COLOR = "#94a3b8"
VERDICT_SCALE = alt.Scale(domain=[POSITIVE, NEGATIVE, UNCERTAIN],
                          range=[POSITIVE_COLOR, NEGATIVE_COLOR, UNCERTAIN_COLOR])
COUNT_AXIS = alt.Axis(tickMinStep=1, format="d")
_PALETTES = {
    POSITIVE: ("#1e3a8a", "#1d4ed8", "#2563eb", "#3b82f6", "#0e7490", "#0369a1"),
    NEGATIVE: ("#7f1d1d", "#b91c1c", "#dc2626", "#ea580c", "#9a3412", "#be123c"),
}


class FontMissingError(RuntimeError):
    """The Korean font package is not installed."""


# --- fonts and word clouds ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def korean_font_path() -> Path:
    """NanumGothic.ttf inside the installed `koreanize-matplotlib` package (never a system font)."""
    spec = importlib.util.find_spec(FONT_PACKAGE)  # locates the package without running its __init__
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "fonts" / FONT_FILE
        if path.is_file():
            return path
    raise FontMissingError(f"the Korean font {FONT_FILE} was not found: install the pinned koreanize-matplotlib "
                           "(pip install -r requirements.txt)")


def wordcloud_png(frequencies: Mapping[str, float], label: str = POSITIVE, width: int = 720, height: int = 360,
                  max_words: int = 100) -> bytes | None:
    """A PNG word cloud of `frequencies` (word → weight) in the label's colours; None when there are no words."""
    from wordcloud import WordCloud

    words = {str(w): float(c) for w, c in frequencies.items() if str(w).strip() and c and c > 0}
    if not words:
        return None
    palette = _PALETTES.get(label, _PALETTES[POSITIVE])

    def color(word, font_size, position, orientation, random_state=None, **kwargs):
        return palette[zlib.crc32(word.encode("utf-8")) % len(palette)]

    cloud = WordCloud(font_path=str(korean_font_path()), width=width, height=height, background_color="white",
                      max_words=max_words, prefer_horizontal=0.95, color_func=color, random_state=42,
                      collocations=False)
    cloud.generate_from_frequencies(words)
    buf = io.BytesIO()
    cloud.to_image().save(buf, format="PNG", optimize=True)
    return buf.getvalue()


# --- uploads and single texts --------------------------------------------------------------------------


def sentiment_bar(results: pd.DataFrame) -> alt.Chart:
    """Number of reviews per verdict: 긍정, 부정 and 애매함 (the model does not know)."""
    order = [POSITIVE, NEGATIVE, UNCERTAIN]
    counts = results["verdict"].dropna().value_counts().reindex(order, fill_value=0)
    data = pd.DataFrame({"판정": counts.index, "리뷰 수": counts.to_numpy()})
    data["비율"] = data["리뷰 수"] / max(int(data["리뷰 수"].sum()), 1)
    return alt.Chart(data, title="판정 분포").mark_bar().encode(
        x=alt.X("판정:N", sort=order, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("리뷰 수:Q", axis=COUNT_AXIS),
        color=alt.Color("판정:N", scale=VERDICT_SCALE, legend=None),
        tooltip=["판정", "리뷰 수", alt.Tooltip("비율:Q", format=".1%")],
    )


def confidence_histogram(results: pd.DataFrame) -> alt.Chart:
    """Histogram of the confidence (max(p, 1-p)) of the decided predictions (not 애매함), stacked by label."""
    data = results.dropna(subset=["confidence"]).rename(columns={"verdict": "감성", "confidence": "신뢰도"})
    return alt.Chart(data[["감성", "신뢰도"]], title="신뢰도 분포").mark_bar().encode(
        x=alt.X("신뢰도:Q", bin=alt.Bin(extent=[0.5, 1.0], step=0.05), title="신뢰도"),
        y=alt.Y("count():Q", title="리뷰 수", stack=True, axis=COUNT_AXIS),
        color=alt.Color("감성:N", scale=SENTIMENT_SCALE),
        tooltip=[alt.Tooltip("count():Q", title="리뷰 수"), "감성"],
    )


# --- movies --------------------------------------------------------------------------------------------


BUCKET_DAYS = {"day": 1, "week": 7}


def by_day_chart(by_day: Sequence[Mapping], share: bool = False, bucket: str = "day") -> alt.Chart:
    """Reviews per day (or per week: rows dated by their Monday, `bucket="week"`) stacked by label on a time
    axis with the year, or (share=True) the positive share per bucket as a line. Dates are KST calendar days
    as the API gives them; the chart reads them as UTC days so that no browser's time zone shifts them."""
    frame = pd.DataFrame(list(by_day), columns=["date", "positive", "negative"])
    frame["date"] = pd.to_datetime(frame["date"], utc=True)
    frame["end"] = frame["date"] + pd.Timedelta(days=BUCKET_DAYS[bucket])
    unit = "주" if bucket == "week" else "날짜"
    axis = alt.Axis(format="%Y-%m-%d", labelAngle=0, labelOverlap=True, title=f"{unit} (KST)")
    x = alt.X("date:T", axis=axis, scale=alt.Scale(type="utc"))
    when = alt.Tooltip("date:T", title="주 시작일" if bucket == "week" else "날짜", format="%Y-%m-%d", formatType="utc")
    if share:
        total = (frame["positive"] + frame["negative"]).where(lambda s: s > 0)
        frame["긍정 비율"] = frame["positive"] / total
        frame["리뷰 수"] = frame["positive"] + frame["negative"]
        return alt.Chart(frame, title=f"{'주별' if bucket == 'week' else '날짜별'} 긍정 비율").mark_line(
            point=True, color=POSITIVE_COLOR).encode(
            x=x,
            y=alt.Y("긍정 비율:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            tooltip=[when, alt.Tooltip("긍정 비율:Q", format=".1%"), "리뷰 수"],
        )
    long = frame.melt(id_vars=["date", "end"], value_vars=["positive", "negative"], var_name="kind",
                      value_name="리뷰 수")
    long["감성"] = long["kind"].map({"positive": POSITIVE, "negative": NEGATIVE})
    # Each bar spans its day or week on the time axis (x to x2), so gaps between dates stay visible. Vega-Lite
    # does not stack bars ranged in x (they came out as thin lines), so the stack is computed here: positive at
    # the bottom, negative on top.
    long["위"] = long["리뷰 수"] + long["kind"].eq("negative") * long["date"].map(frame.set_index("date")["positive"])
    long["아래"] = long["위"] - long["리뷰 수"]
    return alt.Chart(long, title=f"{'주별' if bucket == 'week' else '날짜별'} 감성").mark_bar().encode(
        x=x,
        x2="end:T",
        y=alt.Y("위:Q", axis=COUNT_AXIS, title="리뷰 수"),
        y2="아래:Q",
        color=alt.Color("감성:N", scale=SENTIMENT_SCALE),
        tooltip=[when, "감성", "리뷰 수"],
    )


def rating_chart(rows: Sequence[Mapping], normalize: bool = True) -> alt.Chart:
    """Reviewers' own ratings (x) against the predicted sentiment (stacked, as shares or counts)."""
    frame = pd.DataFrame(list(rows), columns=["rating", "positive", "negative"])
    long = frame.melt(id_vars="rating", value_vars=["positive", "negative"], var_name="kind", value_name="리뷰 수")
    long["감성"] = long["kind"].map({"positive": POSITIVE, "negative": NEGATIVE})
    long["평점"] = long["rating"].astype(str)
    order = [str(r) for r in sorted(frame["rating"].dropna().unique())]
    y = alt.Y("리뷰 수:Q", stack="normalize" if normalize else True,
              axis=alt.Axis(format="%", title="예측 비율") if normalize else COUNT_AXIS)
    return alt.Chart(long, title="평점별 예측 감성").mark_bar().encode(
        x=alt.X("평점:N", sort=order, axis=alt.Axis(labelAngle=0), title="리뷰어 평점"),
        y=y,
        color=alt.Color("감성:N", scale=SENTIMENT_SCALE),
        tooltip=["평점", "감성", "리뷰 수"],
    )


def keyword_bar(words: Sequence[Mapping], label: str, top: int = 15) -> alt.Chart:
    """The most frequent keywords of one label's reviews, as horizontal bars."""
    frame = pd.DataFrame(list(words)[:top], columns=["word", "count"]).rename(columns={"word": "단어", "count": "횟수"})
    color = POSITIVE_COLOR if label == POSITIVE else NEGATIVE_COLOR
    return alt.Chart(frame, title=f"{label} 리뷰 키워드").mark_bar(color=color).encode(
        x=alt.X("횟수:Q", axis=COUNT_AXIS),
        y=alt.Y("단어:N", sort="-x", title=None),
        tooltip=["단어", "횟수"],
    )


def aspect_chart(rows: Sequence[Mapping]) -> alt.Chart:
    """Megabox's points (연출, 스토리, ...): how many reviews name each (bar length) and the positive share
    of those reviews (colour, red negative through grey to blue positive, and the figure beside the bar)."""
    names = {"aspect": "관람 포인트", "reviews": "언급한 리뷰", "share": "언급 비율", "positive_share": "긍정 비율"}
    frame = pd.DataFrame(list(rows), columns=list(names)).rename(columns=names)
    frame["긍정 비율"] = frame["긍정 비율"].astype(float)
    frame["표시"] = [f"긍정 {p:.0%}" if pd.notna(p) else "" for p in frame["긍정 비율"]]
    order = frame["관람 포인트"].tolist()  # the site's order
    scale = alt.Scale(domain=[0, 0.5, 1], range=[NEGATIVE_COLOR, "#d1d5db", POSITIVE_COLOR], interpolate="rgb")
    color = alt.Color("긍정 비율:Q", scale=scale, legend=alt.Legend(format="%"))
    room = max(1, int(frame["언급한 리뷰"].max() if len(frame) else 1) * 1.2)  # the figure beside the longest bar
    x = alt.X("언급한 리뷰:Q", axis=COUNT_AXIS, scale=alt.Scale(domain=[0, room]))
    base = alt.Chart(frame).encode(
        y=alt.Y("관람 포인트:N", sort=order, title=None),
        tooltip=["관람 포인트", "언급한 리뷰", alt.Tooltip("언급 비율:Q", format=".1%"),
                 alt.Tooltip("긍정 비율:Q", format=".1%")],
    )
    bars = base.mark_bar().encode(x=x, color=color)
    labels = base.mark_text(align="left", dx=4).encode(x=x, text="표시:N")
    return alt.layer(bars, labels, title="관람 포인트별 언급 수와 긍정 비율")


# --- models and monitoring ---------------------------------------------------------------------------------


ROLE_SCALE = alt.Scale(domain=["챔피언", "도전자", "기타"], range=["#f59e0b", "#7c3aed", "#64748b"])


def _role(v: Mapping, champion: str | None) -> str:
    if v["version"] == str(champion):
        return "챔피언"
    return "도전자" if "challenger" in (v.get("aliases") or ()) else "기타"


def versions_chart(versions: Sequence[Mapping], champion: str | None, floor: float | None = None) -> alt.LayerChart:
    """Accuracy per model version with its 95% interval on the evaluation set (Wilson, from the run's `n`),
    the gate's floor as a rule when known, and each point's role: with a single version it still says how
    sure the figure is and how far above the floor it stands."""
    from reviewops.evaluate.metrics import accuracy_interval

    rows = []
    for v in versions:
        acc = v.get("accuracy") if v.get("accuracy") is not None else (v.get("metrics") or {}).get("accuracy")
        if acc is None:
            continue
        n = int((v.get("metrics") or {}).get("n") or 0)
        low, high = accuracy_interval(round(acc * n), n) if n else (acc, acc)
        rows.append({"버전": f"v{v['version']}", "번호": int(v["version"]) if str(v["version"]).isdigit() else 0,
                     "정확도": float(acc), "하한": low, "상한": high, "평가 리뷰 수": n, "역할": _role(v, champion),
                     "학습기": v.get("trainer_name") or v.get("trainer") or "-"})
    frame = pd.DataFrame(rows, columns=["버전", "번호", "정확도", "하한", "상한", "평가 리뷰 수", "역할", "학습기"])
    values = [*frame["하한"], *frame["상한"], *([floor] if floor is not None else [])]
    pad = 0.01
    scale = alt.Scale(domain=[min(values) - pad, min(1.0, max(values) + pad)]) if values else alt.Scale(zero=False)
    x = alt.X("버전:N", sort=alt.EncodingSortField("번호"), axis=alt.Axis(labelAngle=0), title="버전")
    base = alt.Chart(frame).encode(x=x)
    tooltip = ["버전", "역할", "학습기", alt.Tooltip("정확도:Q", format=".4f"),
               alt.Tooltip("하한:Q", title="95% 구간 하한", format=".4f"),
               alt.Tooltip("상한:Q", title="95% 구간 상한", format=".4f"), alt.Tooltip("평가 리뷰 수:Q", format=",")]
    bars = base.mark_rule(strokeWidth=2, color="#94a3b8").encode(y=alt.Y("하한:Q", scale=scale, title="정확도"),
                                                                 y2="상한:Q")
    points = base.mark_point(size=140, filled=True, opacity=1).encode(
        y=alt.Y("정확도:Q", scale=scale, title="정확도"), color=alt.Color("역할:N", title="역할", scale=ROLE_SCALE),
        tooltip=tooltip)
    labels = base.mark_text(dx=14, align="left", fontSize=11).encode(
        y=alt.Y("정확도:Q", title="정확도"), text=alt.Text("정확도:Q", format=".4f"))
    layers = [bars, points, labels]
    if floor is not None:
        rule = pd.DataFrame({"기준": [floor], "이름": [f"최저 기준 {floor:.4f}"]})
        y = alt.Y("기준:Q", title="정확도")  # one axis title for all layers (Vega-Lite would join theirs)
        layers.append(alt.Chart(rule).mark_rule(color="#dc2626", strokeDash=[6, 4]).encode(y=y))
        layers.append(alt.Chart(rule).mark_text(align="left", dy=-7, color="#dc2626", fontSize=11).encode(
            y=y, text="이름:N", x=alt.value(4)))
    return alt.layer(*layers).properties(title="버전별 정확도 (95% 구간)")


def comparison_chart(rows: Sequence[Mapping]) -> alt.Chart:
    """Side-by-side bars of two versions on the same measures (`{"지표", "버전", "값"}` rows, e.g. accuracy per
    slice of the champion and the challenger)."""
    frame = pd.DataFrame(list(rows), columns=["지표", "버전", "값"])
    return alt.Chart(frame, title="챔피언과 도전자: 구간별 정확도").mark_bar().encode(
        y=alt.Y("지표:N", title=None, sort=None),
        yOffset="버전:N",
        x=alt.X("값:Q", title="정확도", scale=alt.Scale(zero=False)),
        color=alt.Color("버전:N", title="버전"),
        tooltip=["지표", "버전", alt.Tooltip("값:Q", format=".4f")],
    )


def cost_chart(versions: Sequence[Mapping], champion: str | None) -> alt.LayerChart:
    """Accuracy against serving cost (batch reviews/s on CPU, measured at gate time) for every version
    with both; the champion is highlighted. Up and to the right is better."""
    rows = [{"버전": f"v{v['version']}", "정확도": float(v["accuracy"]),
             "처리량": float(v["cost"]["batch_reviews_per_second"]),
             "p99": float(v["cost"]["single_p99_ms"]), "p50": float(v["cost"]["single_p50_ms"]),
             "역할": _role(v, champion), "학습기": v.get("trainer_name") or v["trainer"]}
            for v in versions if v.get("cost") and v.get("accuracy") is not None]
    frame = pd.DataFrame(rows, columns=["버전", "정확도", "처리량", "p99", "p50", "역할", "학습기"])
    base = alt.Chart(frame).encode(
        x=alt.X("처리량:Q", title="배치 처리량 (리뷰/초, CPU)", scale=alt.Scale(zero=False)),
        y=alt.Y("정확도:Q", title="정확도", scale=alt.Scale(zero=False)),
        tooltip=["버전", "학습기", "역할", alt.Tooltip("정확도:Q", format=".4f"),
                 alt.Tooltip("처리량:Q", title="배치 처리량 (리뷰/초)", format=",.0f"),
                 alt.Tooltip("p50:Q", title="단건 지연 p50 (ms)", format=".1f"),
                 alt.Tooltip("p99:Q", title="단건 지연 p99 (ms)", format=".1f")],
    )
    points = base.mark_point(size=140, filled=True).encode(color=alt.Color("역할:N", title="역할", scale=ROLE_SCALE))
    labels = base.mark_text(dy=-12, fontSize=11).encode(text="버전:N")
    return (points + labels).properties(title="버전별 정확도와 서빙 비용")


def local_times(values: pd.Series) -> pd.Series:
    """A column of API times (ISO text or datetimes; naive means UTC, as the store keeps them) as
    timezone-aware times in the users' zone (`config.TIMEZONE`, KST)."""
    from reviewops.config import TIMEZONE

    return pd.to_datetime(values, utc=True, errors="coerce", format="mixed").dt.tz_convert(TIMEZONE)


def _hours(values: pd.Series) -> pd.Series:
    """API hour stamps as KST wall-clock times without a zone: Vega-Lite shows a zoneless time as it is,
    whatever the browser's zone, so the axis reads in KST."""
    return local_times(values).dt.tz_localize(None)


TRAFFIC_KINDS = {"requests": "요청", "predictions": "예측한 리뷰", "errors": "오류 응답"}
TRAFFIC_COLORS = {"requests": "#0f766e", "predictions": "#7c3aed", "errors": "#dc2626"}
HOUR_AXIS = alt.Axis(format="%m/%d %H시", labelAngle=0, tickCount="hour")
LATENCY_KINDS = {"p50": "중앙값 (p50)", "p95": "상위 5% (p95)", "p99": "상위 1% (p99)"}
LATENCY_COLORS = {"p50": "#0f766e", "p95": "#f59e0b", "p99": "#dc2626"}


def traffic_chart(traffic: Sequence[Mapping]) -> alt.Chart:
    """Requests, predicted texts and error answers per hour (KST), every hour of the window on a time axis."""
    frame = pd.DataFrame(list(traffic), columns=["hour", *TRAFFIC_KINDS]).fillna({"errors": 0})
    frame["hour"] = _hours(frame["hour"])
    kinds = list(TRAFFIC_KINDS)
    long = frame.reindex(columns=["hour", *kinds]).melt(id_vars="hour", var_name="kind", value_name="건수")
    long["종류"] = long["kind"].map(TRAFFIC_KINDS)
    return alt.Chart(long, title="시간별 트래픽").mark_line(point=True).encode(
        x=alt.X("hour:T", title="시간 (KST)", axis=HOUR_AXIS),
        y=alt.Y("건수:Q", axis=COUNT_AXIS),
        color=alt.Color("종류:N", title="종류", scale=alt.Scale(domain=[TRAFFIC_KINDS[k] for k in kinds],
                                                               range=[TRAFFIC_COLORS[k] for k in kinds])),
        tooltip=[alt.Tooltip("hour:T", title="시간 (KST)", format="%Y-%m-%d %H:00"), "종류", "건수"],
    )


def mix_chart(mix: Mapping[str, int]) -> alt.Chart:
    """The served predictions' label mix, as a donut."""
    frame = pd.DataFrame({"감성": [POSITIVE, NEGATIVE],
                          "예측 수": [mix["positive"], mix["negative"]]})
    frame["비율"] = frame["예측 수"] / max(int(frame["예측 수"].sum()), 1)
    return alt.Chart(frame, title="예측 감성 비율").mark_arc(innerRadius=50).encode(
        theta=alt.Theta("예측 수:Q"),
        color=alt.Color("감성:N", scale=SENTIMENT_SCALE),
        tooltip=["감성", "예측 수", alt.Tooltip("비율:Q", format=".1%")],
    )


def latency_chart(latency: Sequence[Mapping], hours: Sequence[str] = ()) -> alt.Chart:
    """p50/p95/p99 latency per hour (KST) as lines over time; an hour of `hours` (the whole window) without
    requests breaks the lines instead of joining its neighbours."""
    keys = list(LATENCY_KINDS)
    frame = pd.DataFrame(list(latency), columns=["hour", *keys])
    if hours:
        frame = frame.set_index("hour").reindex(list(dict.fromkeys([*hours, *frame["hour"]]))).reset_index()
    frame["hour"] = _hours(frame["hour"])
    long = frame.melt(id_vars="hour", value_vars=keys, var_name="kind", value_name="지연 (ms)")
    long["백분위"] = long["kind"].map(LATENCY_KINDS)
    return alt.Chart(long, title="시간별 응답 지연").mark_line(point=True).encode(
        x=alt.X("hour:T", title="시간 (KST)", axis=HOUR_AXIS),
        y=alt.Y("지연 (ms):Q", title="지연 (ms)"),
        color=alt.Color("백분위:N", title="백분위", scale=alt.Scale(domain=[LATENCY_KINDS[k] for k in keys],
                                                                range=[LATENCY_COLORS[k] for k in keys])),
        tooltip=[alt.Tooltip("hour:T", title="시간 (KST)", format="%Y-%m-%d %H:00"), "백분위",
                 alt.Tooltip("지연 (ms):Q", format=",.1f")],
    )
