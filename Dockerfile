# One image for every Tailor service: API, orchestrator (Ray head), Ray workers, agents.
FROM python:3.11-slim

# libgomp for torch/onnxruntime threads, libusb for phones on USB, procps for `ray stop`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libusb-1.0-0 procps \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Install torch first, pinned, so no looser requirement pulls another build.
# A GPU image passes e.g. --build-arg TORCH_SPEC="torch==2.13.0" from a CUDA index.
ARG TORCH_SPEC=torch==2.13.0
RUN pip install --no-cache-dir "$TORCH_SPEC"

COPY pyproject.toml README.md ./
COPY core ./core
COPY store ./store
COPY api ./api
COPY orchestrator ./orchestrator
COPY workers ./workers
COPY device_agent ./device_agent
COPY cli ./cli
RUN pip install --no-cache-dir ".[all,data,usb]"

ENV TAILOR_DATA_DIR=/data TAILOR_ARTIFACT_DIR=/artifacts TAILOR_CACHE_DIR=/data/cache
VOLUME ["/data", "/artifacts"]
ENTRYPOINT ["tailor"]
CMD ["--help"]
