# Tollway in a container: the wheel built from this repository, installed into a slim Python
# image, run as an unprivileged user. Minimal on purpose; see docs/operations.md.
# (Not built in the project's own CI: its machine has no container engine. The wheel is tested.)
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tollway ./tollway
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 tollway
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER tollway
WORKDIR /home/tollway
# The store, when SQLite, and the spill directory live beside the config: mount /etc/tollway.
ENV TOLLWAY_CONFIG=/etc/tollway/tollway.yaml
EXPOSE 8787
CMD ["tollway", "serve", "--host", "0.0.0.0"]
