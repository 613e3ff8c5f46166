# The base image of every ReviewOps service: Python 3.11, a JRE for konlpy, the locked runtime stack
# installed once (no test or lint tools: those are in requirements-dev.txt), the project at /app (the
# same tree `make up` runs from), and a non-root user. No secrets: every credential comes from the
# environment at run time (.env, see .env.example); a CA for the package index is a build secret.
#
# docker compose builds it as the `init` service's image (reviewops/base:latest); the service images
# start FROM it. Build arguments (compose passes them from .env, see README "Building behind a proxy"):
#   PYTHON_IMAGE   the Python image to start from (an internal mirror's copy, say)
#   TORCH_INDEX    where torch comes from: the CPU build by default; the gpu profile names a CUDA index;
#                  empty for none (air-gapped: put the wheel in wheels/)
#   PIP_INDEX_URL  a PyPI mirror or proxy, when PyPI itself cannot be reached
# Build secret `pip_ca`: a CA bundle for a TLS-intercepting proxy in front of the package index.
# Build context folder `wheels/`: local wheels (torch's CPU build, an air-gapped site's whole lock)
# that pip takes before the index.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL=

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

# The lock next: this layer (the slow one) is reused until requirements.txt changes. uv installs it
# (parallel downloads); the CA secret and the wheels folder are mounted for this step only. The
# libraries' own test suites and torch's C++ headers are left out (about 300 MB; nothing imports them).
COPY requirements.txt ./
RUN --mount=type=secret,id=pip_ca \
    --mount=type=bind,source=wheels,target=/wheels \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca SSL_CERT_FILE=/run/secrets/pip_ca; fi \
 && if [ -n "$PIP_INDEX_URL" ]; then export PIP_INDEX_URL UV_INDEX_URL="$PIP_INDEX_URL"; else unset PIP_INDEX_URL; fi \
 && if [ -n "$TORCH_INDEX" ]; then export UV_EXTRA_INDEX_URL="$TORCH_INDEX"; fi \
 && pip install --no-cache-dir uv==0.13.8 \
 && uv pip install --python "$(command -v python)" --no-cache --compile-bytecode --find-links /wheels \
      --index-strategy unsafe-best-match -r requirements.txt \
 && pip uninstall -y uv \
 && site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
 && rm -rf "$site"/torch/test "$site"/torch/include "$site"/pandas/tests "$site"/pyarrow/tests \
           "$site"/matplotlib/tests "$site"/onnx/backend/test/data \
 && find "$site"/numpy "$site"/scipy "$site"/sklearn -type d -name tests -prune -exec rm -rf {} +

# The project last. Installed in place (editable), exactly as in a checkout: the library finds the
# DAGs, the app, the nginx template and the sample through reviewops/resources/, whose symbolic links
# point at /app/airflow/dags, /app/streamlit, /app/nginx and /app/data/sample.
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

# Last, so a new version only adds a label: `docker compose build --build-arg REVIEWOPS_VERSION=...`
ARG REVIEWOPS_VERSION=dev
LABEL org.opencontainers.image.title="ReviewOps" org.opencontainers.image.version="${REVIEWOPS_VERSION}"

USER 10001:10001
VOLUME ["/var/lib/reviewops"]
CMD ["reviewops", "--help"]
