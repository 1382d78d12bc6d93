# The worker and its sidecar, installed from the pinned lock.
FROM python:3.11-slim

WORKDIR /app
RUN useradd --system --uid 10001 worker
COPY requirements.lock pyproject.toml README.md ./
COPY src ./src
RUN PIP_CONSTRAINT=/app/requirements.lock pip install --no-cache-dir . \
    && rm -rf /root/.cache

USER worker
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)" || exit 1
CMD ["payment-worker", "run"]
