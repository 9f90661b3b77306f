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

# glibc and libgcc only; TLS roots are built in (rustls with webpki roots).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /usr/local/bin/audit-ingest /usr/local/bin/audit-ingest
ENV AUDIT_LISTEN=0.0.0.0:3001 \
    AUDIT_DATA_DIR=/data \
    AUDIT_MAPPERS_DIR=/mappers.d
VOLUME ["/data", "/mappers.d"]
EXPOSE 3001
USER nonroot
ENTRYPOINT ["/usr/local/bin/audit-ingest"]
CMD ["serve"]
