# ce-gateway image: Debian slim Python 3.11, two stages. The builder installs the package and its
# dependencies into /opt/venv; the final stage copies only that venv (no pip cache, no sources,
# no build tools) and runs as the unprivileged user 10001.
#
#   docker build -t ce-gateway .
#   docker run -p 8080:8080 -v ce-data:/data ce-gateway
#
# Mount your configuration at /etc/ce-gateway/config.yaml (the Helm chart does); arguments after
# the image name are appended to the entrypoint and win (e.g. `--port 9090`).

FROM python:3.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="ce-gateway" \
      org.opencontainers.image.description="CloudEvents push gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --gid 10001 ce-gateway \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin ce-gateway \
    && mkdir -p /data /etc/ce-gateway \
    && chown 10001:10001 /data \
    && printf '%s\n' '# Default configuration: the topic "default" only. Mount your own here.' '{}' \
        > /etc/ce-gateway/config.yaml
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# No curl in slim images: the healthcheck is Python's urllib (non-2xx and refusals raise).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["ce-gateway", "serve", "--config", "/etc/ce-gateway/config.yaml", "--data-dir", "/data", "--host", "0.0.0.0"]
