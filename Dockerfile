# curvscope service image: API, worker and (later) dashboard share it; the command picks the part.
#   docker build -t curvscope .                                   # CPU torch (default)
#   docker build -t curvscope:gpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CURVSCOPE_DATA_DIR=/data

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC="torch>=2.3"

WORKDIR /app
# torch first, from the chosen index, so the layer is cached across code changes
RUN pip install --index-url "${TORCH_INDEX}" "${TORCH_SPEC}"

COPY pyproject.toml README.md ./
COPY curvscope ./curvscope
COPY backend ./backend
COPY worker ./worker
COPY frontend ./frontend
RUN pip install ".[service]" \
    && useradd --create-home --uid 1000 curvscope \
    && mkdir -p /data && chown curvscope /data

USER curvscope
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=4).status != 200)"
CMD ["uvicorn", "backend.app:app", "--host", "0.0.0.0", "--port", "8000"]
