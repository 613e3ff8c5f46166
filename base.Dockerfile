# syntax=docker/dockerfile:1
# The base image of every ReviewOps service: Python 3.11, a JRE for konlpy, the locked stack installed
# once, the project at /app (the same tree `make up` runs from), and a non-root user. No secrets: every
# credential comes from the environment at run time (.env, see .env.example).
#
#   docker build -f base.Dockerfile -t reviewops/base:latest .
#   docker build -f base.Dockerfile --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 \
#       -t reviewops/base-gpu:latest .          # CUDA build of torch, for the `gpu` profile
FROM python:3.11-slim-bookworm

# The CPU build of torch by default (no CUDA libraries, about 2 GB smaller); the gpu profile passes a
# CUDA index instead.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    REVIEWOPS_HOME=/var/lib/reviewops \
    AIRFLOW_HOME=/var/lib/reviewops/airflow \
    JAVA_HOME=/usr/lib/jvm/default-java

# System packages change least often: first. A JRE for konlpy's tagger.
RUN apt-get update \
 && apt-get install -y --no-install-recommends default-jre-headless \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# The lock next: this layer (the slow one) is reused until requirements.txt changes.
COPY requirements.txt ./
RUN pip install --extra-index-url "${TORCH_INDEX}" -r requirements.txt

# The project last. Installed in place (editable), so /app/airflow/dags, /app/streamlit and
# /app/nginx are where the library looks for them, exactly as in a checkout.
COPY pyproject.toml README.md ./
COPY reviewops ./reviewops
COPY airflow ./airflow
COPY streamlit ./streamlit
COPY nginx ./nginx
COPY data/sample ./data/sample
RUN pip install --no-deps --no-build-isolation -e . \
 && useradd --create-home --uid 10001 --user-group reviewops \
 && mkdir -p "$REVIEWOPS_HOME" \
 && chown reviewops:reviewops "$REVIEWOPS_HOME"

USER 10001:10001
VOLUME ["/var/lib/reviewops"]
CMD ["reviewops", "--help"]
