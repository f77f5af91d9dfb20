# Shelf in a container (README, "Containers"). Two images from this file:
#
#   serve (the default target): the dashboard, the HTTP API, batches and Ray nodes, on ONNX Runtime, without PyTorch
#       docker build -t shelf .
#   convert: the same plus PyTorch, a one-shot job that checks a weights file and converts it into the data volume
#       docker build --target convert -t shelf-convert .
#
# PyTorch from PyPI brings several GB of CUDA libraries a CPU never uses (and does not import without them), so the
# images that run all the time go without it: once converted, the ONNX Runtime backends need no torch.
#
# Builds need BuildKit (DOCKER_BUILDKIT=1 with Docker 20.10; the default from 23 on, with buildx). Options:
#   --build-arg BASE=mirror.example.com/library/python:3.11-slim-bookworm   your organisation's base image
#   --secret id=extra_ca,src=/path/to/proxy-ca.pem   a CA bundle pip and apt trust during the build (behind a
#                                                    TLS-intercepting proxy); used by those steps only, never stored
ARG BASE=python:3.11-slim-bookworm

# ---- Python packages, installed into a virtual environment apart from the final images -----------------------------
FROM ${BASE} AS packages
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore PIP_DEFAULT_TIMEOUT=120
RUN python3 -m venv /opt/shelf/venv
COPY deploy/requirements-serve.txt /tmp/requirements-serve.txt
# RapidOCR (shelf-edge prices) asks for OpenCV's desktop build, whose Qt and libGL add ~500 MB to the image; the same
# version's headless build gives it the same cv2 without them.
RUN --mount=type=secret,id=extra_ca --mount=type=bind,source=deploy/with-build-ca,target=/usr/local/bin/with-build-ca \
    with-build-ca sh -c 'pip=/opt/shelf/venv/bin/pip && $pip install -r /tmp/requirements-serve.txt \
      && version=$($pip show opencv-python | sed -n "s/^Version: //p") && $pip uninstall -y -q opencv-python \
      && $pip install -q "opencv-python-headless==$version"'
# The test suites pandas, numpy and sympy ship inside their packages (~100 MB) are never imported by Shelf.
RUN cd /opt/shelf/venv/lib/python3.*/site-packages && rm -rf pandas/tests \
 && find numpy sympy -depth -type d -name tests -exec rm -rf {} +

# ---- what both final images have: no compilers, a user of its own, the data volume --------------------------------
FROM ${BASE} AS runtime
# pg_dump, pg_restore and psql for `python -m shelf backup` / `restore` on PostgreSQL (bookworm's 15, matching the
# compose file's server).
RUN --mount=type=secret,id=extra_ca --mount=type=bind,source=deploy/with-build-ca,target=/usr/local/bin/with-build-ca \
    with-build-ca sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql-client \
      >/dev/null && rm -rf /var/lib/apt/lists/* /var/cache/apt/*' \
 && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin shelf \
 && mkdir -p /data && chown shelf:shelf /data
COPY deploy/entrypoint /usr/local/bin/shelf-entrypoint
COPY deploy/healthcheck /usr/local/bin/shelf-healthcheck
ENV PATH=/opt/shelf/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    SHELF_DATA_DIR=/data \
    TORCH_HOME=/data/torch \
    RAY_USAGE_STATS_ENABLED=0
WORKDIR /app
VOLUME /data
EXPOSE 8501 8000
HEALTHCHECK --interval=5s --timeout=4s --start-period=60s --retries=3 CMD ["shelf-healthcheck"]
ENTRYPOINT ["shelf-entrypoint"]

# ---- the app itself, copied last: a code change rebuilds only these small layers -----------------------------------
FROM scratch AS app
COPY .streamlit /app/.streamlit
COPY streamlit_app.py /app/
COPY pages /app/pages
COPY shelf /app/shelf

FROM runtime AS with-packages
COPY --from=packages /opt/shelf/venv /opt/shelf/venv

# The convert image: the serving image's layers plus PyTorch (a host holding both stores the shared ones once).
FROM with-packages AS convert
COPY deploy/requirements-convert.txt /tmp/requirements-convert.txt
RUN --mount=type=secret,id=extra_ca --mount=type=bind,source=deploy/with-build-ca,target=/usr/local/bin/with-build-ca \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    with-build-ca pip install -r /tmp/requirements-convert.txt
COPY --from=app /app /app
RUN python -m compileall -q /app
USER shelf
CMD ["convert"]

# The serving image, last: `docker build .` without --target builds it.
FROM with-packages AS serve
COPY --from=app /app /app
RUN python -m compileall -q /app
USER shelf
CMD ["dashboard"]
