"""The Korean review-analysis web app (Streamlit): everything but the page layouts.

The app talks only to the v1 prediction API (`client`), never to the review store or MLflow.
`batch` turns an uploaded CSV/TSV into predictions, `charts` draws altair charts and word clouds
(with a Korean font shipped by a Python package), `ui` holds the Streamlit pieces the pages share.
The pages themselves live in `streamlit/` (`streamlit run streamlit/app.py`).
"""
