# syntax=docker/dockerfile:1
# Base image of every ReviewOps service: Python 3.11, a JRE for konlpy, the locked stack, a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    REVIEWOPS_HOME=/var/lib/reviewops

RUN apt-get update \
 && apt-get install -y --no-install-recommends default-jre-headless make \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# The lock first: this layer is reused until requirements.txt changes.
COPY requirements.txt ./
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt

COPY pyproject.toml README.md ./
COPY reviewops ./reviewops
COPY data/sample ./data/sample
RUN pip install --no-deps --no-build-isolation . \
 && useradd --create-home --uid 10001 reviewops \
 && mkdir -p "$REVIEWOPS_HOME" && chown reviewops "$REVIEWOPS_HOME"

USER reviewops
VOLUME ["/var/lib/reviewops"]
CMD ["reviewops", "--help"]
