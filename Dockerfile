# One image for the operator, the trainer runtime and the model server.
FROM python:3.11-slim
RUN useradd --uid 65532 --create-home toque
WORKDIR /app
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir . && rm -rf /root/.cache
USER 65532:65532
ENTRYPOINT []
CMD ["toque", "operator"]
