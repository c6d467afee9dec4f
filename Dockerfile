# One image for web, every worker pool and beat; the command picks the role.
# The base is a build argument only so the tests can build on a stand-in of it
# (tools/standins/); what ships is the official image.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# A fixed numeric id, so Kubernetes can verify runAsNonRoot (deploy/k8s/ runs as 10001).
RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --home-dir /app app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=app:app . .
# Static files (the admin, /api/docs) are collected into the image and served by
# WhiteNoise; settings need no secret or database to collect them.
ENV STATIC_ROOT=/app/staticfiles
RUN DEBUG=true VAR_DIR=/tmp/collect python manage.py collectstatic --noinput -v 0 && rm -rf /tmp/collect
USER 10001:10001

EXPOSE 8000
# The web role answers /healthz; worker roles override this in docker-compose.yml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)" || exit 1
CMD ["python", "-m", "server_config.serve"]
