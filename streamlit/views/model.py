"""모델: the champion the API serves, the version history, and (admins only) promote / roll back."""

import pandas as pd
import streamlit as st

from reviewops.webapp import charts, compare, ui

METRICS = ("accuracy", "f1", "roc_auc", "log_loss")

st.title("🧠 모델")
api = ui.client()
flash = st.session_state.pop("admin_flash", None)
if flash:
    st.success(flash, icon="✅")

# --- the champion -----------------------------------------------------------------------------------
st.subheader("현재 챔피언")
champion = ui.call(api.model)
if champion is not None:
    metrics = champion.get("metrics") or {}
    cols = st.columns(2 + len(METRICS))
    cols[0].metric("버전", f"v{champion['version']}")
    cols[1].metric("학습기", ui.trainer_name(champion.get("trainer")))
    for col, key in zip(cols[2:], METRICS, strict=True):
        col.metric(ui.metric_name(key), ui.number(metrics.get(key), ".4f"))
    st.caption(f"{champion.get('name', '')} · 서빙 방식 {ui.BACKEND_NAMES.get(champion.get('backend'), '-')} · "
               f"학습 데이터 스냅샷 {champion.get('snapshot_id') or '-'} · "
               f"불러온 시각 {ui.local_time(champion.get('loaded_at'))}")

history = ui.require(ui.call(api.models))
versions = [v | {"trainer_name": ui.trainer_name(v["trainer"]),
                 "reason_ko": ui.gate_reason(v.get("reason_code", ""), v.get("reason_args") or {}, v["decision"])}
            for v in history["versions"]]
registry_champion = history["champion"]
if champion is not None and registry_champion and str(registry_champion) != str(champion["version"]):
    st.info(f"레지스트리의 챔피언은 v{registry_champion}입니다. API가 곧 새 버전을 불러옵니다.")

# --- champion against challenger --------------------------------------------------------------------
st.subheader("챔피언과 도전자 비교")
pair = compare.champion_and_challenger(versions, registry_champion)
if pair is None:
    st.info("등록된 모델 버전이 없습니다.")
else:
    best, rival = pair
    if rival is None:
        st.caption("도전자가 없습니다: 챔피언만 보여 줍니다. 새로 학습한 모델이 챔피언을 넘지 못하면 도전자가 됩니다.")
    st.dataframe(compare.comparison_table(best, rival, ui.metric_name), hide_index=True, width="stretch")
    for v in (best, rival):
        if v is not None:
            st.caption(f"v{v['version']} ({ui.DECISION_NAMES.get(v['decision'], '-')}): {v['reason_ko']}")
    slices = compare.slice_rows(best, rival, ui.metric_name)
    if slices:
        st.altair_chart(charts.comparison_chart(slices), width="stretch")

# --- history ----------------------------------------------------------------------------------------
st.subheader("버전 기록")
if versions:
    table = pd.DataFrame([{
        "버전": f"v{v['version']}",
        "역할": ", ".join(ui.DECISION_NAMES.get(a, a) for a in v["aliases"]),
        "학습기": v["trainer_name"],
        "정확도": v["accuracy"],
        "배치 처리량 (리뷰/초)": (v.get("cost") or {}).get("batch_reviews_per_second"),
        "단건 p99 (ms)": (v.get("cost") or {}).get("single_p99_ms"),
        "게이트 결정": ui.DECISION_NAMES.get(v["decision"], v["decision"] or "-"),
        "사유": v["reason_ko"],
        "등록 시각": ui.local_time(v["created_at"]),
    } for v in versions])
    st.dataframe(table, hide_index=True,
                 column_config={"정확도": st.column_config.NumberColumn(format="%.4f"),
                                "배치 처리량 (리뷰/초)": st.column_config.NumberColumn(format="%,.0f"),
                                "단건 p99 (ms)": st.column_config.NumberColumn(format="%.1f")})
    st.altair_chart(charts.versions_chart(versions, registry_champion, compare.gate_floor(versions)),
                    width="stretch")
    st.caption("세로 막대는 평가 리뷰 수로 본 정확도의 95% 신뢰 구간, 빨간 점선은 게이트의 최저 기준입니다.")
    if any(v.get("cost") for v in versions):
        st.altair_chart(charts.cost_chart(versions, registry_champion), width="stretch")
        st.caption("서빙 비용은 게이트 시점에 평가 리뷰로 CPU에서 잰 값입니다 (오른쪽 위일수록 좋습니다).")

# --- admin ------------------------------------------------------------------------------------------
st.subheader("관리자")
token = ui.admin_token()
if token is None:
    st.caption("모델 승격과 롤백은 관리자만 할 수 있습니다. API의 관리자 토큰(REVIEWOPS_ADMIN_TOKEN)으로 로그인하세요.")
    with st.form("admin_login"):
        given = st.text_input("관리자 토큰", type="password", key="admin_token_input")
        if st.form_submit_button("로그인") and ui.call(api.login, given) is not None:
            st.session_state[ui.ADMIN_TOKEN_KEY] = given.strip()
            st.session_state["admin_flash"] = "관리자로 로그인했습니다."
            st.rerun()
else:
    left, right = st.columns([3, 1])
    left.success("관리자로 로그인되어 있습니다.", icon="🔑")
    if right.button("로그아웃", key="logout"):
        st.session_state.pop(ui.ADMIN_TOKEN_KEY, None)
        st.rerun()
    choices = [str(v["version"]) for v in versions if str(v["version"]) != str(registry_champion)]
    promote_col, rollback_col = st.columns(2)
    with promote_col:
        st.markdown("**버전 승격**")
        if choices:
            version = st.selectbox("챔피언으로 만들 버전", choices, key="promote_version",
                                   format_func=lambda v: f"v{v}")
            if st.button("승격하기", type="primary", key="promote"):
                done = ui.admin_call(api.promote, version, token)
                if done is not None:
                    st.session_state["admin_flash"] = f"v{done['champion']}을(를) 챔피언으로 승격했습니다."
                    st.rerun()
        else:
            st.caption("승격할 다른 버전이 없습니다.")
    with rollback_col:
        st.markdown("**롤백**")
        st.caption("챔피언을 직전 챔피언으로 되돌립니다.")
        if st.button("이전 챔피언으로 롤백", key="rollback"):
            done = ui.admin_call(api.rollback, token)
            if done is not None:
                st.session_state["admin_flash"] = (f"v{done['was']}에서 v{done['champion']}(으)로 롤백했습니다.")
                st.rerun()
