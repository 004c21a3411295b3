# scoresvc served by waitress on 0.0.0.0:8080, as a non-root user, its SQLite database in
# /var/lib/scoresvc (mount a volume there; docker-compose.yml does).
#
#   docker build -t scoresvc .
#   docker run -p 8080:8080 -v scoresvc-data:/var/lib/scoresvc scoresvc
#
# Every SCORESVC_* variable configures the service (docs/configuration.md); arguments after the image
# name are scoresvc's own flags (e.g. --store-tokens).

# A local image can stand in where no registry is reachable (--build-arg BASE_IMAGE=...).
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
# pip reads these from the environment: --build-arg PIP_NO_INDEX=1 and
# --build-arg PIP_FIND_LINKS=/src/wheelhouse install from a wheelhouse in the build context.
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY . .
# The service gets a virtualenv of its own, without pip: the runtime stage copies only that.
RUN python -m pip wheel --no-deps --wheel-dir /dist . \
 && python -m venv --without-pip /opt/scoresvc \
 && python -m pip --python /opt/scoresvc/bin/python install /dist/scoresvc-*.whl

FROM ${BASE_IMAGE}
# The database directory belongs to the service's user: a named volume mounted there starts as
# a copy of it, owner included.
RUN groupadd --gid 10001 scoresvc \
 && useradd --uid 10001 --gid scoresvc --home-dir /var/lib/scoresvc --no-create-home \
      --shell /usr/sbin/nologin scoresvc \
 && install -d -o scoresvc -g scoresvc -m 0750 /var/lib/scoresvc
COPY --from=build /opt/scoresvc /opt/scoresvc
ENV PATH=/opt/scoresvc/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SCORESVC_HOST=0.0.0.0 \
    SCORESVC_PORT=8080 \
    SCORESVC_DATABASE_URL=sqlite:////var/lib/scoresvc/scores.db
WORKDIR /var/lib/scoresvc
# Numeric, so that an orchestrator can tell that it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
# The slim image has no curl: Python asks /healthz (200 while the database answers) itself.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import http.client as h, os, sys; c = h.HTTPConnection('127.0.0.1', int(os.environ.get('SCORESVC_PORT') or 8080), timeout=4); c.request('GET', '/healthz'); sys.exit(c.getresponse().status != 200)"]
# Exec form: PID 1 is scoresvc itself, which stops on SIGTERM at once (no shell in between).
ENTRYPOINT ["scoresvc"]
