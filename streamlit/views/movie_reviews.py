"""영화 리뷰 분석: a collected movie's reviews as the models predicted them (GET /v1/movies, .../summary)."""

from datetime import date

import streamlit as st

from reviewops.webapp import charts, ui
from reviewops.webapp.client import LABELS, NEGATIVE, POSITIVE

PICKER_SIZE = 500  # movies offered at once; a search finds the rest
CRAWLED, ALL = "crawled", "all"  # the source filter's groups beside single sources
WEEKLY_FROM_DAYS = 92  # a longer span is shown per week by default

st.title("🎬 영화 리뷰 분석")
api = ui.client()

# The filter's options come from the answer (its `sources`), its value from the last run.
group = st.session_state.get("movie_source") or CRAWLED
query = st.session_state.get("movie_query", "")
filters = {"crawled": True} if group == CRAWLED else {} if group == ALL else {"source": group}
found = ui.require(ui.call(api.movie_list, q=query, limit=PICKER_SIZE, **filters))
sources = found["sources"]
if not sources:
    st.info("아직 수집된 영화가 없습니다. 리뷰 수집(reviews_collect)과 채점(reviews_score)이 끝나면 여기에 나타납니다.")
    st.stop()
options = {s["source"]: s["name"] if s["crawled"] else f"{s['name']} 과거 기록" for s in sources}
if any(s["crawled"] for s in sources):
    options = {CRAWLED: "수집한 영화 (CGV·메가박스)", **options}
options[ALL] = "전체"
if group not in options:  # no crawled film yet: everything
    group = ALL
    found = ui.require(ui.call(api.movie_list, q=query, limit=PICKER_SIZE))
st.session_state["movie_source"] = group

left, right = st.columns([3, 2])
left.segmented_control("출처", list(options), format_func=options.get, key="movie_source")
right.text_input("제목으로 찾기", key="movie_query", placeholder="예: 서울의 봄, 또는 영화 번호")
movies = found["movies"]
if not movies:
    st.info(f"'{query}'에 맞는 영화가 없습니다." if query else "이 출처의 영화가 없습니다.")
    st.stop()
if found["total"] > len(movies):
    st.caption(f"{found['total']:,}편 중 리뷰가 많은 {len(movies):,}편을 보여 줍니다. 제목이나 번호로 찾아보세요.")

by_id = {m["id"]: m for m in movies}
source_names = {s["source"]: s["name"] for s in sources}
movie_id = st.selectbox(
    "영화", list(by_id), key="movie",
    format_func=lambda i: f"{by_id[i]['name']} · {source_names.get(by_id[i]['source'], by_id[i]['source'])} "
                          f"· 리뷰 {by_id[i]['reviews']:,}개")
with st.spinner("리뷰를 분석하는 중…"):
    summary = ui.require(ui.call(api.movie_summary, movie_id))
movie = summary["movie"]
by_day = summary["by_day"]
positive = sum(d["positive"] for d in by_day)
negative = sum(d["negative"] for d in by_day)

c1, c2, c3, c4 = st.columns(4)
c1.metric("수집한 리뷰", f"{movie['reviews']:,}")
c2.metric("감성 분석된 리뷰", f"{movie['scored']:,}")
c3.metric("긍정 비율", ui.percent(positive / (positive + negative)) if positive + negative else "-")
c4.metric("긍정 / 부정", f"{positive:,} / {negative:,}")
model = summary["model"]
if model["versions"]:
    st.caption(f"모델 {model['name']} 버전 {', '.join(map(str, model['versions']))}의 예측 기준")

if not positive + negative:
    st.info("이 영화의 리뷰는 아직 감성 분석되지 않았습니다.")
    st.stop()

st.subheader("날짜별 감성")
span = (date.fromisoformat(by_day[-1]["date"]) - date.fromisoformat(by_day[0]["date"])).days
left, right = st.columns(2)
bucket = left.segmented_control("단위", ["day", "week"], key="by_day_bucket",
                                default="week" if span > WEEKLY_FROM_DAYS else "day",
                                format_func={"day": "일별", "week": "주별"}.get) or "day"
view = right.segmented_control("표시", ["리뷰 수", "긍정 비율"], default="리뷰 수", key="by_day_view")
rows = summary["by_week"] if bucket == "week" else by_day
st.altair_chart(charts.by_day_chart(rows, share=view == "긍정 비율", bucket=bucket), width="stretch")
st.caption(f"{by_day[0]['date']} ~ {by_day[-1]['date']} (KST), 리뷰를 쓴 날짜 기준 (날짜가 없으면 수집한 날)")

if summary["aspects"]:
    st.subheader("관람 포인트")
    st.altair_chart(charts.aspect_chart(summary["aspects"]), width="stretch")
    st.caption("메가박스 관람평에서 리뷰어가 고른 포인트(연출, 스토리, 영상미, 배우, OST)별로 "
               "몇 개의 리뷰가 언급했는지와, 그 리뷰들의 긍정 비율(리뷰어 평점 기준, 평점이 없으면 예측 기준)입니다.")

st.subheader("리뷰어 평점과 예측 감성")
if summary["rating_vs_prediction"]:
    normalize = st.toggle("비율로 보기", value=True, key="rating_share")
    st.altair_chart(charts.rating_chart(summary["rating_vs_prediction"], normalize=normalize), width="stretch")
else:
    st.caption("평점이 있는 리뷰가 없습니다.")

st.subheader("키워드")
st.caption("리뷰어 평점과 어긋나지 않는 리뷰만 모았습니다 (평점이 부정인 리뷰는 긍정 키워드에 들어가지 않습니다).")
for side, label in (("positive", POSITIVE), ("negative", NEGATIVE)):
    words = summary["keywords"][side]
    left, right = st.columns(2)
    if words:
        left.altair_chart(charts.keyword_bar(words, label), width="stretch")
        with right:
            ui.wordcloud({w["word"]: w["count"] for w in words}, label)
    else:
        left.caption(f"{label} 리뷰의 키워드가 없습니다.")

st.subheader("대표 리뷰")
left, right = st.columns(2)
for column, side, title in ((left, "positive", "👍 가장 긍정적인 리뷰"), (right, "negative", "👎 가장 부정적인 리뷰")):
    with column:
        st.markdown(f"**{title}**")
        reviews = summary["representative"][side]
        if not reviews:
            st.caption("해당하는 리뷰가 없습니다.")
        for r in reviews:
            rating = f"평점 {r['rating']}" if r["rating"] is not None else "평점 없음"
            with st.container(border=True):
                st.write(r["text"])
                st.caption(f"긍정 확률 {r['score']:.3f} · {rating}")

disagreements = summary["disagreements"]
st.subheader(f"평점과 예측이 다른 리뷰 ({disagreements['count']:,}개)")
if not disagreements["count"]:
    st.caption("리뷰어 평점과 모델 예측이 어긋난 리뷰가 없습니다.")
else:
    st.caption("모델의 오류나 잘못 매겨진 평점을 찾는 곳입니다. 어느 쪽이 맞는지 알려 주시면 피드백으로 저장되어 "
               "다음 학습의 정답으로 쓰입니다. 확신이 큰 예측부터 보여 주며, 모델이 애매하다고 본 예측은 뺐습니다.")
    if ui.admin_token() is None:  # a correction replaces a training label: the API asks for the admin token
        st.caption("정답 수정은 관리자만 할 수 있습니다. 모델 페이지에서 관리자로 로그인하세요.")
for r in disagreements["reviews"]:
    with st.container(border=True):
        st.write(r["text"])
        rating = f"평점 {r['rating']}" if r["rating"] is not None else "평점 없음"
        kind = " · 기대평" if r["kind"] == "expectation" else ""
        predicted = f"예측 {LABELS[r['predicted']]} (긍정 확률 {r['score']:.3f})"
        st.caption(f"{rating} → {LABELS[r['label']]} · {predicted}{kind}")
        if r["feedback"] is not None:
            st.caption(f"✅ 피드백 반영됨: {LABELS[r['feedback']]}")
            continue
        token = ui.admin_token()
        if token is None:
            continue
        rating_right, model_right = st.columns(2)
        chosen = None
        if rating_right.button(f"평점이 맞아요 ({LABELS[r['label']]})", key=f"disagree-rating-{r['review_id']}"):
            chosen = r["label"]
        if model_right.button(f"예측이 맞아요 ({LABELS[r['predicted']]})", key=f"disagree-model-{r['review_id']}"):
            chosen = r["predicted"]
        if chosen is not None and ui.admin_call(api.feedback, r["feedback_id"], chosen,
                                                "영화 리뷰 분석: 평점과 예측 불일치", token=token):
            st.rerun()
