# MailFlow Lab: the app and its sandbox engines in one container, as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MAILFLOW_HOST=0.0.0.0 \
    MAILFLOW_PORT=8000 \
    MAILFLOW_DATA_DIR=/data \
    MAILFLOW_PUBLIC=1

RUN useradd --create-home --uid 10001 mailflow && mkdir -p /data /app && chown mailflow /data
WORKDIR /app
COPY requirements.lock ./
RUN pip install -r requirements.lock
COPY pyproject.toml setup.py README.md ./
COPY app ./app
COPY templates ./templates
COPY static ./static
# A regular install: the wheel carries templates/ and static/ inside the app package.
RUN pip install --no-deps . && rm -rf /app/app /app/templates /app/static /app/build

USER mailflow
EXPOSE 8000 2025 2587 2465 2110 2995 2143 2993
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
CMD ["python", "-m", "app"]
