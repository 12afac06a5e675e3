# syntax=docker/dockerfile:1
# StockPulse: one image whose entry point is supervisord running the price and news workers,
# the scoring worker, cron (supercronic, running the crontab as the unprivileged user) and the
# Streamlit app. It runs the production profile: without real secrets (ANALYST_PASSWORD, the
# database's password) it refuses to start and names the variable to set.
#   docker compose up --build        (see docker-compose.yml: it runs this image as the setup,
#                                     the workers and the app; secrets come from .env)

# ---- builder: the pinned requirements in a virtualenv -----------------------------------
FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
# torch first, from the CPU wheel index: PyPI's Linux x86_64 wheel is a CUDA build of several
# gigabytes that never runs here. Its version is the one pinned in requirements.txt, which the
# second install then finds satisfied (2.x.y+cpu matches ==2.x.y).
RUN set -eu; \
    torch_pin="$(grep -E '^torch==' /tmp/requirements.txt)"; \
    pip install --index-url https://download.pytorch.org/whl/cpu "${torch_pin}"; \
    pip install -r /tmp/requirements.txt; \
    find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

# ---- supercronic: cron for containers, pinned and checksum-verified ---------------------
FROM python:3.11-slim-bookworm AS supercronic
ARG TARGETARCH
ARG SUPERCRONIC_VERSION=0.2.34
ARG SUPERCRONIC_SHA1SUM_AMD64=e8631edc1775000d119b70fd40339a7238eece14
ARG SUPERCRONIC_SHA1SUM_ARM64=4ab6343b52bf9da592e8b4bb7ae6eb5a8e21b71e
RUN set -eu; \
    arch="${TARGETARCH:-amd64}"; \
    case "${arch}" in \
      amd64) sum="${SUPERCRONIC_SHA1SUM_AMD64}" ;; \
      arm64) sum="${SUPERCRONIC_SHA1SUM_ARM64}" ;; \
      *) echo "no pinned supercronic build for ${arch}" >&2; exit 1 ;; \
    esac; \
    url="https://github.com/aptible/supercronic/releases/download/v${SUPERCRONIC_VERSION}/supercronic-linux-${arch}"; \
    python -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
        "${url}" /tmp/supercronic; \
    echo "${sum}  /tmp/supercronic" | sha1sum -c -; \
    install -m 0755 /tmp/supercronic /usr/local/bin/supercronic

# ---- runtime: only the virtualenv, supercronic and the project --------------------------
FROM python:3.11-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="StockPulse" \
      org.opencontainers.image.description="Streamlit analyst workbench for 20 US stocks"
RUN set -eu; \
    test -f /usr/share/zoneinfo/America/New_York; \
    groupadd --system --gid 10001 stockpulse; \
    useradd --system --uid 10001 --gid stockpulse --create-home --home-dir /home/stockpulse \
        --shell /usr/sbin/nologin stockpulse
WORKDIR /opt/stockpulse
COPY --from=builder /opt/venv /opt/venv
COPY --from=supercronic /usr/local/bin/supercronic /usr/local/bin/supercronic
COPY app ./app
COPY workers ./workers
COPY ml ./ml
COPY db ./db
COPY config ./config
COPY core ./core
COPY .streamlit ./.streamlit
COPY supervisord.conf crontab pyproject.toml ./
# Writable state for the unprivileged user: logs and locks (var), model versions and the model
# registry (models); both are volumes in docker-compose.yml. The code stays root-owned.
RUN set -eu; \
    mkdir -p var/logs models; \
    chown -R stockpulse:stockpulse var models; \
    python -m compileall -q app workers ml db config core
# PROFILE=production: a container never serves the demo's password. STOCKPULSE_APP_ADDRESS:
# inside a container the app listens on every interface, which a published port needs (outside
# one, supervisord.conf keeps 127.0.0.1).
ENV PROFILE=production \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/stockpulse \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/opt/stockpulse/var \
    MODELS_DIR=/opt/stockpulse/models \
    MODEL_CONFIG_PATH=/opt/stockpulse/models/model_config.json \
    HF_HOME=/opt/stockpulse/var/hf-cache \
    STOCKPULSE_HOME=/opt/stockpulse \
    STOCKPULSE_PYTHON=/opt/venv/bin/python \
    STOCKPULSE_LOG_DIR=/opt/stockpulse/var/logs \
    STOCKPULSE_APP_ADDRESS=0.0.0.0 \
    STOCKPULSE_CRON=on \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false
USER stockpulse:stockpulse
EXPOSE 8501
# The first start seeds the history and trains a first pair before the app comes up.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30m --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).read()"]
# The deployment's start (workers.startup: schema, history seeded or caught up, a first model
# when none serves), then it hands over to supervisord.
ENTRYPOINT ["python", "-m", "workers.startup", "--"]
CMD ["supervisord", "-c", "/opt/stockpulse/supervisord.conf"]
