# Slipway's image, used by docker-compose.temporal.yml and deploy/kubernetes/: orchestration
# workers (the default command), host agents (`python agent.py`) and the server.
FROM python:3.11-slim

# HAProxy: the default traffic router runs one per environment (on the load-balancer host's
# agent), driven over its runtime API.
RUN apt-get update \
    && apt-get install -y --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# Metadata first so the dependency layer is cached while only code changes.
COPY pyproject.toml README.md ./
COPY workflows ./workflows
COPY activities ./activities
COPY lanes ./lanes
COPY catalogue ./catalogue
COPY integrations ./integrations
COPY schemas ./schemas
COPY starter ./starter
COPY worker.py agent.py ./
RUN pip install --no-cache-dir '.[postgres]'

CMD ["python", "worker.py"]
