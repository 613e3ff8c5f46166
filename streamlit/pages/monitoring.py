"""모니터링: the API's traffic, latency and prediction mix, feedback agreement and drift (GET /v1/monitoring)."""

import pandas as pd
import streamlit as st

from reviewops.webapp import charts, ui

CHECK_NAMES = {
    "length_psi": "리뷰 길이 분포 (PSI)",
    "unknown_token_rate": "처음 보는 단어 비율",
    "score_psi": "예측 점수 분포 (PSI)",
    "positive_share": "긍정 예측 비율",
    "mean_confidence": "평균 신뢰도",
    "agreement": "리뷰어 평점과의 일치율",
}
STATUS = {
    "ok": ("success", "드리프트 없음: 최근 리뷰가 학습 데이터와 비슷합니다."),
    "drift": ("error", "드리프트 감지: 최근 리뷰나 예측이 학습 때와 달라졌습니다. 재학습을 검토하세요."),
    "insufficient_data": ("info", "최근 리뷰가 적어 드리프트를 판단하지 않았습니다."),
}

st.title("📈 모니터링")
api = ui.client()
if st.button("새로 고침", key="refresh", icon="🔄"):
    st.rerun()
data = ui.require(ui.call(api.monitoring))

traffic = data["traffic"]
mix = data["prediction_mix"]
latency = data["latency_ms"]
feedback = data["feedback"]
served = mix["positive"] + mix["negative"]
st.caption(f"최근 {data['window_hours']}시간 동안 API가 한 예측 기준")

c1, c2, c3, c4, c5 = st.columns(5)
requests = sum(t["requests"] for t in traffic)
c1.metric("요청 수", f"{requests:,}" if traffic else "-")
c2.metric("예측한 리뷰", f"{served:,}")
c3.metric("긍정 비율", ui.percent(mix["positive"] / served) if served else "-")
c4.metric("평균 신뢰도", ui.percent(data["mean_confidence"]))
c5.metric("피드백 일치율", ui.percent(feedback["agreement"]), help="피드백이 예측과 같은 비율",
          delta=f"피드백 {feedback['n']:,}건", delta_color="off", delta_arrow="off")

c1, c2, c3 = st.columns(3)
c1.metric("지연 p50", ui.number(latency["p50"], ",.1f", " ms"))
c2.metric("지연 p95", ui.number(latency["p95"], ",.1f", " ms"))
c3.metric("지연 p99", ui.number(latency["p99"], ",.1f", " ms"))

left, right = st.columns([2, 1])
with left:
    if traffic:
        st.altair_chart(charts.traffic_chart(traffic), width="stretch")
    else:
        st.info("아직 API가 한 예측이 없습니다.")
with right:
    if served:
        st.altair_chart(charts.mix_chart(mix), width="stretch")
if any(latency[k] is not None for k in ("p50", "p95", "p99")):
    st.altair_chart(charts.latency_chart(latency), width="stretch")

st.subheader("데이터 드리프트")
drift = data["drift"]
if not drift:
    st.info("아직 모니터링 보고서가 없습니다 (model_monitor 작업이 하루 한 번 만듭니다).")
else:
    kind, text = STATUS.get(drift["status"], ("info", f"상태: {drift['status']}"))
    getattr(st, kind)(text)
    model = drift.get("model") or {}  # optional in a stored report (DriftReport)
    window = drift.get("window") or {}
    st.caption(f"모델 v{model.get('version', '?')} · 최근 리뷰 {drift['n_current']:,}개 vs 기준 "
               f"{drift['n_reference']:,}개 · 기간 {window.get('start', '?')[:16]} ~ {window.get('end', '?')[:16]}")
    checks = pd.DataFrame([{
        "검사": CHECK_NAMES.get(c["name"], c["name"]),
        "값": c["value"],
        "기준": c["reference"],
        "임계값": c["threshold"],
        "초과": "⚠️ 초과" if c["crossed"] else "정상",
        "설명": c["detail"],
    } for c in drift["checks"]])
    if not checks.empty:
        st.dataframe(checks, hide_index=True, column_config={
            "값": st.column_config.NumberColumn(format="%.4f"), "기준": st.column_config.NumberColumn(format="%.4f"),
            "임계값": st.column_config.NumberColumn(format="%.4f")})
