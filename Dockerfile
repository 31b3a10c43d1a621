# syntax=docker/dockerfile:1
# stream-indexer image: `docker build -t stream-indexer .`
# Stage 1 builds a virtualenv with the package and its wheels; stage 2 copies only that
# virtualenv and the SQL migrations (also packaged; /app/migrations is what the compose and
# chart jobs pass to `migrate up --path`) onto a clean slim base, as a non-root user.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# setup.py packages migrations/ as stream_indexer.migrations, so both go into the build.
COPY pyproject.toml setup.py README* ./
COPY migrations ./migrations
COPY stream_indexer ./stream_indexer
RUN pip install --upgrade pip \
    && pip install . \
    && stream-indexer --help > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="stream-indexer" \
      org.opencontainers.image.description="Keeps an OpenSearch index of listings in step with Kafka change events" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 indexer \
    && useradd --system --uid 10001 --gid indexer --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin indexer
COPY --from=build /opt/venv /opt/venv
COPY migrations /app/migrations
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STREAM_INDEXER_LOG__FORMAT=json
WORKDIR /app
USER 10001:10001
# /metrics, /healthz, /readyz (STREAM_INDEXER_METRICS__PORT, default 9108).
EXPOSE 9108
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('STREAM_INDEXER_METRICS__PORT', '9108') + '/healthz', timeout=4)"]
# `run` stops on SIGTERM within STREAM_INDEXER_SHUTDOWN_TIMEOUT_S; give it longer than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["stream-indexer"]
CMD ["run"]
