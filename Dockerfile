# One image for every process (web, worker, beat); the command decides the role.
FROM python:3.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VAR_DIR=/app/var

WORKDIR /app
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# collectstatic needs settings that load: a throwaway key is enough at build time.
RUN SECRET_KEY=build-only DEBUG=true python manage.py collectstatic --noinput -v 0 \
    && rm -f var/secret_key \
    && useradd --create-home --uid 1000 marketapp \
    && chown -R marketapp /app/var
USER marketapp
EXPOSE 8000
# The hardened server command (README "Production"): frames over WS_MAX_FRAME_BYTES are refused
# before they are buffered. docker-compose overrides it with workers and the proxy settings.
CMD ["uvicorn", "marketapp.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--ws", "marketapp.uvicorn_ws:WebSocketProtocol", "--ws-max-size", "65536", "--no-server-header"]
