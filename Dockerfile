# The album pipeline worker (`python -m streams worker`): the Faust table agents (RocksDB under
# DATA_DIR), the web port with /health, /health/detailed and /metrics, and its stage processes
# (router, sinks) as children in the same container (STAGES). To run the sinks in containers
# of their own, set STAGES=router here and run `python -m streams stages sinks` beside it.
#   docker build -t album-pipeline-worker .      (compose/docker-compose.yml builds it too)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# An unprivileged user that owns only the data directory.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home \
       --shell /usr/sbin/nologin app \
    && mkdir -p /data \
    && chown app:app /data

# Build and install from /src, then drop the sources: the worker imports the installed package.
# faust-streaming ships only an sdist; without a C compiler it installs its pure-Python build.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY agents ./agents
COPY tables ./tables
COPY storage ./storage
COPY schemas ./schemas
RUN pip install . \
    && rm -rf /src

WORKDIR /app

# Defaults for a container; every variable of streams/settings.py can still be overridden.
ENV DATA_DIR=/data \
    WEB_BIND=0.0.0.0 \
    WEB_PORT=6066

USER app
VOLUME ["/data"]
EXPOSE 6066

# Healthy once the worker runs with its tables recovered (GET /health answers 200).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=6 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('WEB_PORT', '6066'), timeout=4)"]

CMD ["python", "-m", "streams", "worker"]
