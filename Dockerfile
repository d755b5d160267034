# One image for the operator, the trainer runtime and the model server.
# Users: `docker build -t REGISTRY/toque:TAG .` (or `buildah bud`); the local stack builds
# its own Debian base with mmdebstrap (no outside registry there) and passes BASE_IMAGE.
# The base must provide python3 (3.11) with the venv module.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Dependencies alone, so a change to Toque's code rebuilds one small layer, not 700 MB.
FROM ${BASE_IMAGE} AS deps
COPY pyproject.toml constraints.txt /src/
# pip lives in its own venv and installs into /opt/toque (--python), which never holds pip.
# Every transitive version pinned as in the tests (constraints.txt); the [ml] extra brings
# mlflow and scikit-learn, which the trainer and the model server load.
# Behind a TLS-inspecting proxy, pass its CA bundle: --secret id=ca,src=/path/to/bundle.crt
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca,target=/run/secrets/ca \
    python3 -m venv /opt/pip \
    && python3 -m venv --without-pip /opt/toque \
    && if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python3 -c "import tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['ml']))" > /src/requirements.txt \
    && /opt/pip/bin/pip --python /opt/toque/bin/python install --disable-pip-version-check -q \
       -c /src/constraints.txt -r /src/requirements.txt \
    && find /opt/toque -name '__pycache__' -prune -exec rm -rf {} +

FROM deps AS build
COPY README.md /src/
COPY operator /src/operator
WORKDIR /opt/toque
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca,target=/run/secrets/ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && /opt/pip/bin/pip --python /opt/toque/bin/python install --disable-pip-version-check -q \
       --no-deps /src \
    && find /opt/toque -name '__pycache__' -prune -exec rm -rf {} + \
    && mkdir /overlay \
    && cp -a --parents lib/python3.11/site-packages/toque lib/python3.11/site-packages/toque-*.dist-info \
       bin/toque bin/toque-local /overlay/

FROM ${BASE_IMAGE}
# No compiler, no pip, no sources: the virtualenv only.
COPY --from=deps /opt/toque /opt/toque
COPY --from=build /overlay/ /opt/toque/
# kopf (getpass) looks its user up by UID: a name for ours, and LOGNAME for any other UID a
# pod's securityContext picks.
RUN echo 'toque:x:65532:65532:toque:/tmp:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'toque:x:65532:' >> /etc/group
ENV PATH=/opt/toque/bin:$PATH \
    HOME=/tmp \
    LOGNAME=toque \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric non-root user, as the restricted Pod Security Standard checks it.
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT []
CMD ["toque", "operator"]
