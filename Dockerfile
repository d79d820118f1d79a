# The project's image: the `backbone` command and everything it runs (docker-compose.yml's
# migrate, projector, dashboard and lag-monitor services).
#   docker build -t trading-backbone .

# The build stage has the C compiler the compiled fast paths need (setup.py: Cython's build of
# backbone/domain, backbone/_speedups.c); the image itself gets only the wheel.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
# [desk]: the dashboard's web stack (streamlit)
RUN pip install --no-cache-dir "$(ls /wheels/*.whl)[desk]" && rm -rf /wheels \
    && useradd --create-home --uid 10001 backbone
# Kafka and PostgreSQL are services of their own: the image never runs `backbone local`.
USER backbone
WORKDIR /home/backbone
ENTRYPOINT ["backbone"]
CMD ["--help"]
