# syntax=docker/dockerfile:1
# Images of the Synod node (`synod`) and of the Kubernetes operator
# (`synod-operator`), from one build:
#
#   docker build --target node     -t synod/synod:0.1.0 .
#   docker build --target operator -t synod/synod-operator:0.1.0 .
#
# Both run as the distroless `nonroot` user (uid/gid 65532), the uid the
# operator's pod security context and the chart use.

FROM rust:1.89-bookworm AS build
WORKDIR /src
# Dependencies first, so that source edits do not refetch crates.
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY core core
COPY node node
COPY client client
COPY operator operator
COPY tests tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p synod-node -p synod-operator --bins \
 && install -D target/release/synod /out/synod \
 && install -D target/release/synod-operator /out/synod-operator

# glibc and libgcc (mimalloc, ring), no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot AS node
COPY --from=build /out/synod /usr/local/bin/synod
USER 65532:65532
EXPOSE 7000 7100 7200 2181
ENTRYPOINT ["/usr/local/bin/synod"]
CMD ["serve"]

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /out/synod-operator /usr/local/bin/synod-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/synod-operator"]
CMD ["run"]
