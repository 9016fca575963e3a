# The DeepSeek Toolkit model server image.
#
#   make image                       # deepseek/framework:<version>-edge: deepseek-core[edge]
#   make image EDGE=edge-all         # <version>-edge-all: + the verticals' edge forms
#   make image TARGET=full           # <version>-full: + PyTorch and the three verticals
#   docker run -p 8080:8080 -p 8081:8081 -v $PWD/models:/mnt/models deepseek/framework:0.1.0-edge
#
# `deepseek serve /mnt/models` is the default command: a folder holding model.onnx (edge), or
# model.safetensors + model.json / model.pt (full), the layout KServe's storage initializer
# writes. Third-party packages come from the lock files in deploy/image/ (each pinned to a
# version and the sha256 of its wheel; pip --require-hashes refuses anything else, and pip
# check refuses an incomplete lock); `python deploy/image/lock.py` rewrites them.
# Build arguments:
#   BASE          the base image, pinned by digest: a Debian (bookworm) image with python3 and
#                 python3-venv, e.g. one made offline with `make image-base` (mmdebstrap;
#                 `make image` passes it as NAME@sha256:DIGEST), or
#                 python:3.11-slim-bookworm@sha256:<digest> with Docker
#   PIP_ARGS      extra pip arguments (an index or --find-links for the PyTorch CPU wheel:
#                 --extra-index-url https://download.pytorch.org/whl/cpu)
#   EDGE          edge: the deepseek-core extra installed (default "edge"; "edge-all" adds the
#                 verticals' edge forms, so `serve lung-nodule-attention` etc. work too)
#   TORCH         full: the PyTorch requirement (default "torch", which on PyPI is the CUDA
#                 build, several GB; "torch==2.13.0+cpu" with the CPU index keeps it small)
ARG BASE=deepseek/base:bookworm

# ---------------------------------------------------------------- build: the four wheels
FROM ${BASE} AS build
ARG PIP_ARGS=""
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir ${PIP_ARGS} "build>=1.2" "hatchling>=1.25"
COPY core /src/core
COPY plugins /src/plugins
COPY deploy/image/*.lock /locks/
RUN for d in core plugins/medical plugins/manufacturing plugins/finance; do \
      /opt/build/bin/python -m build --wheel --no-isolation --outdir /wheels /src/$d || exit 1; \
    done

# ---------------------------------------------------------------- edge-env: the edge venv
# Made in the build stage with the build tools' pip (pip --python), so neither pip nor the
# wheels reach the edge image: only the finished environment is copied. The test suites that
# numpy and numba ship inside their packages (about 30 MB, never imported to serve) are left
# out of it.
FROM build AS edge-env
ARG PIP_ARGS=""
ARG EDGE="edge"
RUN python3 -m venv --without-pip /opt/deepseek \
 && pip() { /opt/build/bin/pip --python /opt/deepseek/bin/python "$@"; } \
 && pip install --no-cache-dir ${PIP_ARGS} --require-hashes --no-deps -r /locks/${EDGE}.lock \
 && if [ "${EDGE}" = "edge" ]; then set -- /wheels/deepseek_core-*.whl; \
    else set -- /wheels/*.whl; fi \
 && pip install --no-cache-dir --no-deps "$@" \
 && pip check \
 && site=$(/opt/deepseek/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))") \
 && for pkg in numpy numba; do \
      if [ -d "$site/$pkg" ]; then \
        find "$site/$pkg" -type d -name tests -prune -exec rm -rf {} + || exit 1; \
      fi; \
    done

# ---------------------------------------------------------------- runtime: user, entrypoint
FROM ${BASE} AS runtime
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin deepseek \
 && mkdir -p /mnt/models && chown deepseek /mnt/models
ENV PATH=/opt/deepseek/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready', timeout=2)"]
ENTRYPOINT ["deepseek"]
CMD ["serve", "/mnt/models", "--host", "0.0.0.0", "--port", "8080", "--grpc-port", "8081"]

# ---------------------------------------------------------------- full: PyTorch and the verticals
FROM runtime AS full
ARG PIP_ARGS=""
ARG TORCH="torch"
COPY --from=build /wheels /wheels
COPY --from=build /locks/full.lock /tmp/full.lock
RUN python3 -m venv /opt/deepseek \
 && /opt/deepseek/bin/pip install --no-cache-dir ${PIP_ARGS} "${TORCH}" \
 && /opt/deepseek/bin/pip install --no-cache-dir --require-hashes --no-deps -r /tmp/full.lock \
 && /opt/deepseek/bin/pip install --no-cache-dir --no-deps /wheels/*.whl \
 && /opt/deepseek/bin/pip check \
 && rm -rf /wheels /tmp/full.lock
USER 10001

# ---------------------------------------------------------------- edge (default): no PyTorch
FROM runtime AS edge
COPY --from=edge-env /opt/deepseek /opt/deepseek
USER 10001
