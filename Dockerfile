# Multi-stage build: the presence module and the faye-presence server from one Rust build, then a Redis
# image that loads the module and a slim image for the server. Untested here: no Docker engine runs on
# the machines this project is built on (see README).
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
COPY --from=build /src/target/release/faye-presence /usr/local/bin/faye-presence
EXPOSE 8000
ENTRYPOINT ["faye-presence", "--listen", "0.0.0.0:8000"]
