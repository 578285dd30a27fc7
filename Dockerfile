# One image for every Tailor service: API, orchestrator (Ray head), Ray workers, agents.
FROM python:3.11-slim

# libgomp for torch/onnxruntime threads, libusb for phones on USB, procps for `ray stop`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libusb-1.0-0 procps \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Exactly the versions the test suite ran with (requirements.lock, hashes checked), torch
# first as the lock pins it: its CPU build, from PyTorch's CPU index. A GPU image passes e.g.
# --build-arg TORCH_SPEC="torch==2.13.0" --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
# and gets the rest of the lock without its torch entry.
ARG TORCH_SPEC=
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY requirements.lock ./
RUN if [ -n "$TORCH_SPEC" ]; then \
      awk '/^torch==/{skip=1; next} skip && /^ /{next} {skip=0; print}' requirements.lock > /tmp/lock.txt; \
    else \
      TORCH_SPEC="$(sed -n 's/^\(torch==[^ ]*\).*/\1/p' requirements.lock)"; cp requirements.lock /tmp/lock.txt; \
    fi \
 && pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" "$TORCH_SPEC" \
 && pip install --no-cache-dir --require-hashes --no-deps -r /tmp/lock.txt

COPY pyproject.toml README.md ./
COPY core ./core
COPY store ./store
COPY api ./api
COPY orchestrator ./orchestrator
COPY workers ./workers
COPY device_agent ./device_agent
COPY cli ./cli
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && pip check

ENV TAILOR_DATA_DIR=/data TAILOR_ARTIFACT_DIR=/artifacts TAILOR_CACHE_DIR=/data/cache
VOLUME ["/data", "/artifacts"]
ENTRYPOINT ["tailor"]
CMD ["--help"]
