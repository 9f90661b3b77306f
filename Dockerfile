# syntax=docker/dockerfile:1
# audit-ingest: build the service and its built-in WebAssembly mappers, then
# ship the binary alone in a small runtime image.
#
#   docker build -t audit-ingest .
#   docker run -p 3001:3001 -v audit-data:/data -e AUDIT_API_TOKEN=... audit-ingest

FROM rust:1.95-bookworm AS build
WORKDIR /src
# rust-toolchain.toml pins the toolchain and adds the wasm32-wasip2 target.
COPY rust-toolchain.toml ./
RUN rustup toolchain install
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p audit-ingest \
    && cp target/release/audit-ingest /usr/local/bin/audit-ingest
# The runtime image has no shell, so its directories are made here. A fresh
# named volume takes the ownership of the image's directory at its mount
# point: /data belongs to nonroot (65532) so the embedded store can be
# created in it; /mappers.d stays root's (drop-in mappers must be owned by
# root or the service's user, and writable by their owner only).
RUN mkdir -p /rootfs/data /rootfs/mappers.d && chmod 0755 /rootfs/data /rootfs/mappers.d

# glibc and libgcc only; TLS roots are built in (rustls with webpki roots).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /usr/local/bin/audit-ingest /usr/local/bin/audit-ingest
COPY --from=build --chown=65532:65532 /rootfs/data /data
COPY --from=build /rootfs/mappers.d /mappers.d
ENV AUDIT_LISTEN=0.0.0.0:3001 \
    AUDIT_DATA_DIR=/data \
    AUDIT_MAPPERS_DIR=/mappers.d
VOLUME ["/data", "/mappers.d"]
EXPOSE 3001
USER nonroot
ENTRYPOINT ["/usr/local/bin/audit-ingest"]
CMD ["serve"]
