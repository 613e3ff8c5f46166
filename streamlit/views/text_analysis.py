"""텍스트 분석: one review, or a CSV/TSV of reviews, through POST /v1/predict; feedback on each prediction."""

import pandas as pd
import streamlit as st

from reviewops.data.labels import VERDICT_UNCERTAIN, flags_ko
from reviewops.webapp import batch, charts, ui
from reviewops.webapp.client import NEGATIVE, POSITIVE, ApiError

HIGHLIGHT_ROWS = 20  # reviews per page of the highlighted table

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
                answer = ui.call(api.predict, [text], explain=True)
            if answer is not None:
                st.session_state["single_result"] = {"text": text, "model": answer["model"],
                                                     "prediction": answer["predictions"][0]}
    result = st.session_state.get("single_result")
    if result:
        pred = result["prediction"]
        left, middle, right = st.columns(3)
        left.metric("감성", ui.sentiment_badge(pred.get("verdict") or pred["label"]))
        middle.metric("신뢰도", ui.certainty(pred),
                      help="긍정 확률이 애매한 구간에 있거나 모델이 모르는 입력이면 '애매함'으로 답합니다.")
        right.metric("긍정 확률", ui.number(pred.get("score"), ".3f"))
        if pred.get("flags"):
            st.warning(f"모델이 잘 모르는 입력입니다: {flags_ko(pred['flags'])}", icon="🤔")
        if pred.get("explanation"):
            st.markdown("**판정의 근거**")
            ui.show_highlight(result["text"], pred["explanation"])
        model = result["model"]
        st.caption(f"모델 {model.get('name', '')} v{model.get('version', '?')} · 분석한 리뷰: {result['text'][:80]}")
        if pred.get("id"):
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
                results, model, spans = batch.predict_reviews(
                    api, frame, lambda done, total: bar.progress(done / total, text=f"분석 중… {done:,}/{total:,}"))
                bar.empty()
                st.session_state["upload_result"] = {"name": file.name, "results": results, "model": model,
                                                     "spans": spans}
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
        answered = results.dropna(subset=["verdict"])
        counts = answered["verdict"].value_counts()
        c1, c2, c3, c4, c5 = st.columns(5)
        c1.metric("분석한 리뷰", f"{len(answered):,}")
        for col, verdict in zip((c2, c3, c4), (POSITIVE, NEGATIVE, VERDICT_UNCERTAIN), strict=True):
            n = int(counts.get(verdict, 0))
            col.metric(verdict, f"{n:,}", ui.percent(n / len(answered)) if len(answered) else None,
                       delta_color="off", delta_arrow="off")
        c5.metric("제외한 행", f"{len(results) - len(answered):,}", help="너무 긴 리뷰")
        # P(긍정) as text: a blank row has none, and a number column would show its null as "None"
        shown = results.assign(score=[ui.number(x, ".3f") if pd.notna(x) else "-" for x in results["score"]])
        st.dataframe(shown, hide_index=True,
                     column_order=["id", "document", "verdict", "confidence", "score", "words", "flags", "note"],
                     column_config={"id": "ID", "document": st.column_config.TextColumn("리뷰", width="large"),
                                    "verdict": "판정",
                                    "confidence": st.column_config.ProgressColumn("신뢰도", min_value=0.0,
                                                                                  max_value=1.0, format="percent"),
                                    "score": "긍정 확률",
                                    "words": "근거 단어", "flags": "입력 확인", "note": "비고"})
        st.download_button("결과 다운로드 (CSV)", batch.results_csv(results), key="download",
                           file_name=f"sentiment-{done['name'].rsplit('.', 1)[0]}.csv", mime="text/csv", icon="⬇️")
        if any(done["spans"]):
            st.subheader("판정의 근거")
            pages = max(1, -(-len(results) // HIGHLIGHT_ROWS))
            at = int(st.number_input(f"쪽 (전체 {pages:,}쪽)", 1, pages, 1, key="highlight_page")) - 1
            shown = slice(at * HIGHLIGHT_ROWS, (at + 1) * HIGHLIGHT_ROWS)
            st.markdown(ui.highlight_table(results.iloc[shown], done["spans"][shown]), unsafe_allow_html=True)
            st.caption(ui.HIGHLIGHT_LEGEND, unsafe_allow_html=True)
        elif len(answered):
            st.caption(f"리뷰가 {batch.EXPLAIN_MAX_ROWS:,}개를 넘는 파일은 판정의 근거 단어를 표시하지 않습니다.")
        decided = answered[answered["verdict"].isin([POSITIVE, NEGATIVE])]
        if len(answered):
            left, right = st.columns(2)
            left.altair_chart(charts.sentiment_bar(results), width="stretch")
            right.altair_chart(charts.confidence_histogram(results), width="stretch")
        if len(decided):
            st.subheader("워드클라우드")
            left, right = st.columns(2)
            with left:
                ui.wordcloud(batch.keywords(decided.loc[decided["verdict"] == POSITIVE, "document"]), POSITIVE)
            with right:
                ui.wordcloud(batch.keywords(decided.loc[decided["verdict"] == NEGATIVE, "document"]), NEGATIVE)

        rows = answered.dropna(subset=["prediction_id"]).reset_index(drop=True)
        if len(rows):
            st.subheader("행별 피드백")
            choice = st.selectbox(
                "피드백을 줄 리뷰", range(len(rows)), key="feedback_row",
                format_func=lambda i: f"[{rows.at[i, 'id']}] {rows.at[i, 'verdict']} · {rows.at[i, 'document'][:50]}")
            row = rows.iloc[int(choice)]
            ui.feedback_controls({"id": row["prediction_id"], "label": row["label"], "score": row["score"]},
                                 key=f"row-{row['prediction_id']}")
