# syntax=docker/dockerfile:1
# sipforge image: the routes file is compiled into the binary, so each
# routes change is a new image. Layers, slowest first, so that a routes
# change rebuilds only the last build step (scripts/container-build.sh):
#   1. third-party crates, from the manifests alone
#   2. runtime/ and codegen/ (change with sipforge releases, not routes)
#   3. build.rs, src/ and the routes file -> the binary
#
#   docker build --build-arg ROUTES=deploy/routes.yaml \
#                --build-arg SIPFORGE_GIT_COMMIT=$(git rev-parse HEAD) \
#                -t sipforge:$(git rev-parse --short HEAD) .
#
# The same steps run without Docker in scripts/container-check.sh (CI).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
ENV CARGO_TERM_COLOR=never PROFILE=release

# 1. Dependencies: manifests only.
COPY Cargo.toml Cargo.lock ./
COPY runtime/Cargo.toml runtime/
COPY codegen/Cargo.toml codegen/
COPY scripts/container-build.sh scripts/
RUN scripts/container-build.sh deps

# 2. The heavy workspace crates.
COPY runtime/ runtime/
COPY codegen/ codegen/
RUN scripts/container-build.sh crates

# 3. The routes and the binary.
ARG ROUTES=routes.yaml
ARG SIPFORGE_GIT_COMMIT=
COPY build.rs ./
COPY src/ src/
COPY ${ROUTES} routes.yaml
RUN SIPFORGE_GIT_COMMIT="${SIPFORGE_GIT_COMMIT}" scripts/container-build.sh app /out

FROM debian:${DEBIAN_RELEASE}-slim
RUN groupadd --system --gid 10001 sipforge \
 && useradd --system --uid 10001 --gid sipforge --no-create-home --shell /usr/sbin/nologin sipforge
COPY --from=build /out/sipforge /usr/local/bin/sipforge
# The sibling link's directory (docs/operations.md): mount the same volume
# here in the old and the new container of a rollout.
RUN install -d -m 0700 -o 10001 -g 10001 /run/sipforge
ENV SIPFORGE_RUNTIME_DIR=/run/sipforge
USER 10001:10001
# SIP over UDP (the routes' `listen:` or --listen), metrics over HTTP.
EXPOSE 5060/udp 9090/tcp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sipforge"]
CMD ["--metrics", "0.0.0.0:9090", "--log-format", "json"]
