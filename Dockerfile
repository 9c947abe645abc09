# Two images from one file (Debian bookworm's Python 3.11, a virtual environment, a non-root user):
#   trainer  (the default target) the CUDA build of torch that PyPI serves, the trainer and its pod entry point
#            `llmtj-worker`; `docker run IMAGE` trains the default model on the embedded corpus, one process.
#   operator the kopf operator `llmtj-operator`, no torch.
#
#   docker build -t llmtj-trainer .                      docker build --target operator -t llmtj-operator .
#
# Dependencies are installed from the pinned lock files before any source is copied, so a source change rebuilds
# only the last layers. BASE may name any Debian bookworm image (the tests build on one made with debootstrap).
# PIP_CERT (optional) names a CA bundle mounted at build time for pip behind a TLS proxy; no file of it is stored.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS python
ARG DEBIAN_FRONTEND=noninteractive
ARG VERSION=0.1.0
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/distributed-llm-trainer/distributed_llm_trainer" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3=3.11.2-1+b1 python3-venv=3.11.2-1+b1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin llmtj \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

FROM python AS operator-deps
ARG PIP_CERT
COPY operator/requirements.lock /tmp/operator.lock
RUN pip install --no-deps -r /tmp/operator.lock

FROM operator-deps AS operator
LABEL org.opencontainers.image.title="llm-training-operator" \
      org.opencontainers.image.description="Kubernetes operator for LLMTrainingJob: elastic torchrun pod groups"
ARG PIP_CERT
COPY operator/ /opt/llmtj/operator/
RUN pip install --no-deps /opt/llmtj/operator
USER 1000:1000
ENTRYPOINT ["llmtj-operator"]
CMD ["--all-namespaces"]

FROM python AS trainer-deps
ARG PIP_CERT
COPY trainer_image/requirements.lock /tmp/trainer.lock
RUN pip install --no-deps -r /tmp/trainer.lock

FROM trainer-deps AS trainer
LABEL org.opencontainers.image.title="llm-trainer" \
      org.opencontainers.image.description="The distributed_llm_trainer trainer (PyTorch Lightning) and llmtj-worker"
ARG PIP_CERT
COPY trainer_image/ /opt/llmtj/trainer_image/
# Editable: the packaged configs (config/default.yaml) stay where the trainer looks for them, beside src/.
RUN pip install --no-deps -e /opt/llmtj/trainer_image \
 && install -d -o 1000 -g 1000 /workspace
WORKDIR /workspace
USER 1000:1000
ENTRYPOINT ["llmtj-worker"]
