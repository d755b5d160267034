# One image for the operator, the trainer runtime and the model server.
# Users: `docker build -t REGISTRY/toque:TAG .` (or `buildah bud`); the local stack builds
# its own Debian base with mmdebstrap (no outside registry there) and passes BASE_IMAGE.
# The base must provide python3 (3.11) with the venv module.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Every transitive version pinned as in the tests (constraints.txt); the [ml] extra brings
# mlflow and scikit-learn, which the trainer and the model server load.
COPY pyproject.toml constraints.txt README.md /src/
COPY operator /src/operator
# Behind a TLS-inspecting proxy, pass its CA bundle: --secret id=ca,src=/path/to/bundle.crt
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca,target=/run/secrets/ca \
    python3 -m venv /opt/toque \
    && if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && /opt/toque/bin/pip install --disable-pip-version-check -q -c /src/constraints.txt '/src[ml]' \
    && /opt/toque/bin/pip uninstall -y -q pip \
    && find /opt/toque -name '__pycache__' -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
# No compiler, no pip, no sources: the virtualenv only.
COPY --from=build /opt/toque /opt/toque
ENV PATH=/opt/toque/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric non-root user, as the restricted Pod Security Standard checks it.
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT []
CMD ["toque", "operator"]
