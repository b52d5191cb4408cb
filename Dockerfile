# Multi-stage build: the presence module and the faye-presence server from one Rust build, then a Redis
# image that loads the module and a slim image for the server. No Docker engine runs on the machines
# this project is built on, so scripts/container-test.sh runs what these stages contain instead: the
# same cargo build, the Redis stage's command, and the server stage's entrypoint with
# docker-compose.yml's environment, driven by the real Faye client (see README, "Operating it").
FROM rust:1-bookworm AS build
# bindgen (for redis-module) needs libclang with its headers.
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p presence-module -p faye-presence

# The official Redis 7 image (Debian bookworm, like the build stage, so the glibc matches).
FROM redis:7 AS redis
COPY --from=build /src/target/release/libpresence.so /usr/local/lib/redis/modules/libpresence.so
CMD ["redis-server", "--loadmodule", "/usr/local/lib/redis/modules/libpresence.so", "--appendonly", "yes"]

FROM debian:bookworm-slim AS server
# curl for the compose healthcheck (GET /readyz).
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/faye-presence /usr/local/bin/faye-presence
# Every flag is also a FAYE_PRESENCE_* variable: all interfaces (a container's loopback is its own),
# JSON logs for the log shipper. A container has no redis-server: FAYE_PRESENCE_REDIS must be given.
ENV FAYE_PRESENCE_LISTEN=0.0.0.0:8000 \
    FAYE_PRESENCE_LOG_FORMAT=json
EXPOSE 8000
# docker stop sends SIGTERM: held connects are answered, requests get FAYE_PRESENCE_DRAIN seconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["faye-presence"]
