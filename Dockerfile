# curvscope service image: API, worker and dashboard share it; the command picks the part.
#   docker build -t curvscope .                                   # CPU torch (default)
#   docker build -t curvscope:gpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 .
# TORCH_SPEC is any pip requirement: CI passes "torch @ http://<host>/torch-...whl", a local
# CPU wheel (.ci/compose-check), with TORCH_INDEX=https://pypi.org/simple for its dependencies.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CURVSCOPE_DATA_DIR=/data

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC="torch>=2.3"

WORKDIR /app
# a C compiler for the retraining kernel (curvscope/training/native.py, built below; without
# one the retrained models train through torch operations, about twice as slow)
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       gcc libc6-dev >/dev/null \
    && rm -rf /var/lib/apt/lists/*
# torch first, from the chosen index, so the layer is cached across code changes
RUN pip install --index-url "${TORCH_INDEX}" "${TORCH_SPEC}"

# the dependencies next, in a layer of their own that a code change does not invalidate
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['service']))" >/tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt

COPY README.md ./
COPY curvscope ./curvscope
COPY backend ./backend
COPY worker ./worker
COPY frontend ./frontend
RUN pip install ".[service]" \
    && useradd --create-home --uid 1000 curvscope \
    && mkdir -p /data && chown curvscope /data

USER curvscope
# the kernel, compiled once for this image (a host with another CPU recompiles it, ~3 s)
RUN python -c "from curvscope.training import native; assert native.library() is not None, \
'the retraining kernel did not build'"
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=4).status != 200)"
CMD ["uvicorn", "backend.app:app", "--host", "0.0.0.0", "--port", "8000"]
