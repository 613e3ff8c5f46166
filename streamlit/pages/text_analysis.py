"""텍스트 분석: one review, or a CSV/TSV of reviews, through POST /v1/predict; feedback on each prediction."""

import streamlit as st

from reviewops.webapp import batch, charts, ui
from reviewops.webapp.client import NEGATIVE, POSITIVE, ApiError

st.title("✍️ 텍스트 분석")
api = ui.client()
single, upload = st.tabs(["리뷰 한 개", "파일 업로드 (CSV/TSV)"])

# --- one review ------------------------------------------------------------------------------------
with single:
    text = st.text_area("영화 리뷰", key="review_text", height=120, max_chars=api.limits.max_text_chars,
                        placeholder="예: 배우들 연기가 정말 좋았고 마지막 장면에서 눈물이 났어요")
    if st.button("분석하기", type="primary", key="analyze"):
        problem = api.check_text(text)
        if problem:
            st.warning(problem)
        else:
            with st.spinner("분석 중…"):
                answer = ui.call(api.predict, [text])
            if answer is not None:
                st.session_state["single_result"] = {"text": text, "model": answer["model"],
                                                     "prediction": answer["predictions"][0]}
    result = st.session_state.get("single_result")
    if result:
        pred = result["prediction"]
        left, middle, right = st.columns(3)
        left.metric("감성", ui.sentiment_badge(pred["label"]))
        middle.metric("신뢰도", ui.percent(ui.confidence(pred["score"])))
        right.metric("긍정 확률", f"{pred['score']:.3f}")
        model = result["model"]
        st.caption(f"모델 {model.get('name', '')} v{model.get('version', '?')} · 분석한 리뷰: {result['text'][:80]}")
        ui.feedback_controls(pred, key="single")

# --- a file of reviews -------------------------------------------------------------------------------
with upload:
    st.caption("첫 줄에 `id`, `document` 열이 있는 CSV(.csv) 또는 TSV(.tsv, .txt) 파일을 올리세요. "
               f"다른 열은 무시합니다. 최대 {batch.MAX_UPLOAD_ROWS:,}개 리뷰.")
    file = st.file_uploader("리뷰 파일", type=["csv", "tsv", "txt"], key="upload_file")
    if file is not None:
        token = f"{file.file_id}:{file.name}:{file.size}"
        if st.session_state.get("upload_token") != token:
            st.session_state.pop("upload_result", None)
            try:
                frame = batch.read_upload(file.name, file.getvalue())
                bar = st.progress(0.0, text="분석 중…")
                results, model = batch.predict_reviews(
                    api, frame, lambda done, total: bar.progress(done / total, text=f"분석 중… {done:,}/{total:,}"))
                bar.empty()
                st.session_state["upload_result"] = {"name": file.name, "results": results, "model": model}
            except batch.UploadError as exc:
                st.error(str(exc), icon="📄")
            except ApiError as exc:
                ui.show_error(exc)
            st.session_state["upload_token"] = token
    else:
        st.session_state.pop("upload_token", None)
        st.session_state.pop("upload_result", None)

    done = st.session_state.get("upload_result")
    if done:
        results = done["results"]
        scored = results.dropna(subset=["label"])
        n_pos = int((scored["label"] == POSITIVE).sum())
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("분석한 리뷰", f"{len(scored):,}")
        share = n_pos / len(scored) if len(scored) else None
        c2.metric("긍정", f"{n_pos:,}", ui.percent(share) if share is not None else None, delta_color="off",
                  delta_arrow="off")
        c3.metric("부정", f"{len(scored) - n_pos:,}", ui.percent(1 - share) if share is not None else None,
                  delta_color="off", delta_arrow="off")
        c4.metric("제외한 행", f"{len(results) - len(scored):,}", help="비어 있거나 너무 긴 리뷰")
        st.dataframe(results, hide_index=True, column_order=["id", "document", "label", "confidence", "score", "note"],
                     column_config={"id": "ID", "document": st.column_config.TextColumn("리뷰", width="large"),
                                    "label": "감성",
                                    "confidence": st.column_config.ProgressColumn("신뢰도", min_value=0.0,
                                                                                  max_value=1.0, format="percent"),
                                    "score": st.column_config.NumberColumn("긍정 확률", format="%.3f"),
                                    "note": "비고"})
        st.download_button("결과 다운로드 (CSV)", batch.results_csv(results), key="download",
                           file_name=f"sentiment-{done['name'].rsplit('.', 1)[0]}.csv", mime="text/csv", icon="⬇️")
        if len(scored):
            left, right = st.columns(2)
            left.altair_chart(charts.sentiment_bar(results), width="stretch")
            right.altair_chart(charts.confidence_histogram(results), width="stretch")
            st.subheader("워드클라우드")
            left, right = st.columns(2)
            with left:
                ui.wordcloud(batch.keywords(scored.loc[scored["label"] == POSITIVE, "document"]), POSITIVE)
            with right:
                ui.wordcloud(batch.keywords(scored.loc[scored["label"] == NEGATIVE, "document"]), NEGATIVE)

            st.subheader("행별 피드백")
            rows = scored.reset_index(drop=True)
            choice = st.selectbox(
                "피드백을 줄 리뷰", range(len(rows)), key="feedback_row",
                format_func=lambda i: f"[{rows.at[i, 'id']}] {rows.at[i, 'label']} · {rows.at[i, 'document'][:50]}")
            row = rows.iloc[int(choice)]
            ui.feedback_controls({"id": row["prediction_id"], "label": row["label"], "score": row["score"]},
                                 key=f"row-{row['prediction_id']}")
