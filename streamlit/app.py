"""Entry point of the Korean review-analysis app: `streamlit run streamlit/app.py`.

The app reads only the prediction API at REVIEWOPS_API_URL (default http://127.0.0.1:8000). Its pages live
in `views/`, not `pages/`: Streamlit treats a `pages/` folder beside the main script as an old-style
multipage app until `st.navigation` has run once in the process, so a deep link (/model) opened first ran
the page file alone, with a sidebar of file names and the narrow layout.
"""

import streamlit as st

from reviewops.config import get_settings

st.set_page_config(page_title="리뷰 감성 분석", page_icon="🎬", layout="wide")

pages = [
    st.Page("views/text_analysis.py", title="텍스트 분석", icon="✍️", default=True),
    st.Page("views/movie_reviews.py", title="영화 리뷰 분석", icon="🎬", url_path="movies"),
    st.Page("views/model.py", title="모델", icon="🧠", url_path="model"),
    st.Page("views/monitoring.py", title="모니터링", icon="📈", url_path="monitoring"),
]
page = st.navigation(pages)
st.sidebar.caption(f"API: {get_settings().api.url}")
page.run()
