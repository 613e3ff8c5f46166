"""모니터링: the API's traffic, latency and prediction mix per hour, feedback agreement and drift (GET /v1/monitoring).

Times are shown in KST; the drift findings are the library's Korean renderings (`monitor.finding_ko`).
"""

import pandas as pd
import streamlit as st

from reviewops.monitor import CHECK_NAMES_KO, finding_ko, p_value_ko, verdict_ko
from reviewops.webapp import charts, ui

STATUS = {
    "ok": ("success", "드리프트 없음: 최근 리뷰가 학습 데이터와 비슷합니다."),
    "drift": ("error", "드리프트 감지: 최근 리뷰나 예측이 학습 때와 달라졌습니다. 재학습을 검토하세요."),
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
requests = sum(t["requests"] for t in traffic)
st.caption(f"최근 {data['window_hours']}시간 동안 API가 한 예측 기준 · 모든 API 워커 합계 · 시간은 한국 표준시(KST)")

c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("요청 수", f"{requests:,}")
c2.metric("예측한 리뷰", f"{served:,}")
c3.metric("긍정 비율", ui.percent(mix["positive"] / served) if served else "-")
c4.metric("평균 신뢰도", ui.percent(data["mean_confidence"]))
c5.metric("피드백 일치율", ui.percent(feedback["agreement"]), help="피드백이 예측과 같은 비율",
          delta=f"피드백 {feedback['n']:,}건", delta_color="off", delta_arrow="off")

c1, c2, c3 = st.columns(3)
c1.metric("응답 지연 중앙값", ui.number(latency["p50"], ",.1f", " ms"))
c2.metric("응답 지연 상위 5%", ui.number(latency["p95"], ",.1f", " ms"), help="요청 95%가 이 시간 안에 끝났습니다")
c3.metric("응답 지연 상위 1%", ui.number(latency["p99"], ",.1f", " ms"), help="요청 99%가 이 시간 안에 끝났습니다")

if requests:
    left, right = st.columns([2, 1])
    with left:
        st.altair_chart(charts.traffic_chart(traffic), width="stretch")
    with right:
        if served:
            st.altair_chart(charts.mix_chart(mix), width="stretch")
    st.altair_chart(charts.latency_chart(data.get("latency", []), [t["hour"] for t in traffic]), width="stretch")
else:
    st.info("이 기간에 API가 받은 예측 요청이 없습니다.")

st.subheader("데이터 드리프트")
drift = data["drift"]
if not drift:
    st.info("아직 모니터링 보고서가 없습니다 (model_monitor 작업이 매일 06:00 KST에 만듭니다).")
else:
    if drift["status"] == "insufficient_data":
        minimum = drift.get("min_reviews")
        st.info(f"표본 부족: 최근 리뷰가 {drift['n_current']:,}건뿐이라 드리프트를 판단하지 않았습니다"
                + (f" (최소 {minimum:,}건)." if minimum else "."))
    else:
        kind, text = STATUS.get(drift["status"], ("info", "보고서의 상태를 알 수 없습니다."))
        getattr(st, kind)(text)
    model = drift.get("model") or {}  # optional in a stored report (DriftReport)
    window = drift.get("window") or {}
    st.caption(f"모델 v{model.get('version', '?')} · 최근 리뷰 {drift['n_current']:,}건 vs 기준 "
               f"{drift['n_reference']:,}건 · 기간 {ui.local_time(window.get('start'))} ~ "
               f"{ui.local_time(window.get('end'))} · 임계값을 넘고 통계적으로 유의할 때만 드리프트로 봅니다")
    checks = pd.DataFrame([{
        "검사": CHECK_NAMES_KO.get(c["name"], c["name"]),
        "판정": verdict_ko(c),
        "값": c["value"],
        "기준": c["reference"],
        "임계값": c["threshold"],
        "p값": p_value_ko(c.get("p_value")),
        "설명": finding_ko(c),
    } for c in drift["checks"]])
    if not checks.empty:
        st.dataframe(checks, hide_index=True, column_config={
            "값": st.column_config.NumberColumn(format="%.4f"), "기준": st.column_config.NumberColumn(format="%.4f"),
            "임계값": st.column_config.NumberColumn(format="%.4f"),
            "설명": st.column_config.TextColumn(width="large")})
