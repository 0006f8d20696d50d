# The incidentflow image: `incidentflow gateway` or `incidentflow worker` (see docker-compose.yml, deploy/k8s).
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 incidentflow
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && mkdir -p /data && chown incidentflow /data
USER incidentflow
ENV INCIDENTFLOW_GATEWAY_HOST=0.0.0.0 INCIDENTFLOW_WEB_HOST=0.0.0.0 INCIDENTFLOW_DATA_DIR=/data
ENTRYPOINT ["incidentflow"]
CMD ["--help"]
