# syntax=docker/dockerfile:1
# One image for the four loyalty services.
#   docker build -t loyalty-suite:dev .
#   docker run --rm loyalty-suite:dev serve points      (entrypoint: `loyalty`)
# Kubernetes selects the service with args (`serve <service>`, `migrate <service>`)
# and checks health with native gRPC probes: the image has no HEALTHCHECK.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: resolve and install everything into a virtualenv ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/loyalty
ENV PATH=/opt/loyalty/bin:$PATH
WORKDIR /src

# Dependencies first (only pyproject.toml): this layer is reused until they change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

# Then the project itself, without touching the dependencies again.
COPY shared/ shared/
COPY services/ services/
COPY gen/ gen/
RUN pip install --no-deps . \
 && python -m compileall -q /opt/loyalty \
 && loyalty --help > /dev/null

# ---- runtime: the interpreter, the virtualenv, nothing else ------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 loyalty \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin loyalty
COPY --from=build /opt/loyalty /opt/loyalty
ENV PATH=/opt/loyalty/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
# Numeric so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# gRPC: gateway 50050, points 50051, promotions 50052, tiers 50053.
# Prometheus /metrics: 9460-9463 in the same order.
EXPOSE 50050-50053 9460-9463
ENTRYPOINT ["loyalty"]
CMD ["serve", "gateway"]
