# metrics-pipeline: one image for every process (`metrics-pipeline <command>`).
# Build: docker build -t metrics-pipeline:0.1.0 .
# Runs as uid 10001 on a read-only root filesystem: only /tmp (an emptyDir in the Helm chart)
# and the local store's volume are written.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: the wheel of this repository and its dependencies into a virtualenv ----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/metrics-pipeline
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
RUN /opt/metrics-pipeline/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/metrics-pipeline/bin/pip install /wheels/*.whl \
    && /opt/metrics-pipeline/bin/pip uninstall --yes pip

# -- run: the virtualenv on a clean base, no compilers, no pip, no sources ---------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="metrics-pipeline" \
      org.opencontainers.image.description="Streaming metrics aggregation: Kafka in, windowed rollups with t-digest percentiles out." \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 pipeline \
    && useradd --system --uid 10001 --gid pipeline --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin pipeline \
    && mkdir -p /var/lib/metrics-pipeline/store \
    && chown pipeline:pipeline /var/lib/metrics-pipeline/store
COPY --from=build /opt/metrics-pipeline /opt/metrics-pipeline
# No .pyc writes and every cache under /tmp: the root filesystem can be read-only.
ENV PATH=/opt/metrics-pipeline/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache \
    METRICS_PIPELINE_HTTP_HOST=0.0.0.0 \
    METRICS_PIPELINE_STORE_PATH=/var/lib/metrics-pipeline/store
USER 10001:10001
WORKDIR /tmp
EXPOSE 9464
ENTRYPOINT ["metrics-pipeline"]
CMD ["--help"]
