"""영화 리뷰 분석: a collected movie's reviews as the models predicted them (GET /v1/movies, .../summary)."""

import streamlit as st

from reviewops.webapp import charts, ui
from reviewops.webapp.client import NEGATIVE, POSITIVE

st.title("🎬 영화 리뷰 분석")
api = ui.client()
movies = ui.require(ui.call(api.movies))
if not movies:
    st.info("아직 수집된 영화가 없습니다. 리뷰 수집(reviews_collect)과 채점(reviews_score)이 끝나면 여기에 나타납니다.")
    st.stop()

by_id = {m["id"]: m for m in movies}
movie_id = st.selectbox(
    "영화", list(by_id), key="movie",
    format_func=lambda i: f"{by_id[i]['title'] or by_id[i]['source_movie_id']} · {by_id[i]['source'].upper()} "
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
view = st.segmented_control("표시", ["리뷰 수", "긍정 비율"], default="리뷰 수", key="by_day_view")
st.altair_chart(charts.by_day_chart(by_day, share=view == "긍정 비율"), width="stretch")

st.subheader("리뷰어 평점과 예측 감성")
if summary["rating_vs_prediction"]:
    normalize = st.toggle("비율로 보기", value=True, key="rating_share")
    st.altair_chart(charts.rating_chart(summary["rating_vs_prediction"], normalize=normalize), width="stretch")
    st.caption("평점이 높은데 부정으로 예측된 리뷰(또는 그 반대)가 많다면 반어법이나 모델의 약점을 살펴볼 만합니다.")
else:
    st.caption("평점이 있는 리뷰가 없습니다.")

st.subheader("키워드")
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
