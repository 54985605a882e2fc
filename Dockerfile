# syntax=docker/dockerfile:1
#
# Builds the three binaries of the service (arcus-api, arcus-worker, arcusctl)
# into one small runtime image. The command picks the binary:
#   docker run IMAGE                  -> arcus-api (the default CMD)
#   docker run IMAGE arcus-worker
#   docker run IMAGE arcusctl db migrate
# Needs BuildKit (the default builder of current Docker) for the cache mounts.

FROM rust:1-bookworm AS builder
WORKDIR /app
COPY . .
# Release builds keep debug info for profiling on developer machines; images
# carry stripped binaries. target/ lives in a cache mount, so it is gone once this RUN ends: the binaries
# are copied out to /out inside the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/app/target \
    CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked -p api -p worker -p cli \
 && mkdir -p /out \
 && cp target/release/arcus-api target/release/arcus-worker target/release/arcusctl /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 arcus \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin arcus
COPY --from=builder /out/ /usr/local/bin/
# The built-in default is 127.0.0.1:8080, unreachable from outside a container.
ENV ARCUS__HTTP__ADDR=0.0.0.0:8080
USER 10001
EXPOSE 8080
CMD ["arcus-api"]
