# syntax=docker/dockerfile:1
# Pulse container image: built in a Rust image, run from distroless (no shell, no package manager) as a
# fixed non-root uid. `make image` builds it as pulse:dev.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# pipefail: a failing command anywhere in a pipeline fails the step.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src

# Dependency layer: build the dependency graph against stub sources, so editing src/ does not rebuild
# every crate. Only Cargo.toml, Cargo.lock and build.rs invalidate it.
# Cargo reads every target the manifest declares, built or not: each [[bench]], [[test]] and [[example]]
# (its `path`, or the default one) gets an empty stub too, read from Cargo.toml so a new one needs no
# edit here. The stubs stay for the second build; the image builds none of them.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && awk -F'"' ' \
         /^\[/ { if (file) print file; dir = ""; file = "" }; \
         /^\[\[bench\]\]/ { dir = "benches" }; \
         /^\[\[test\]\]/ { dir = "tests" }; \
         /^\[\[example\]\]/ { dir = "examples" }; \
         dir && /^name *=/ && !file { file = dir "/" $2 ".rs" }; \
         dir && /^path *=/ { file = $2 }; \
         END { if (file) print file }' Cargo.toml \
       | while read -r target; do mkdir -p "$(dirname "$target")" && echo 'fn main() {}' > "$target"; done \
    && cargo build --release --locked \
    && rm -rf src

COPY src ./src
# `pulse doctor` compiles in the uids of the dashboards it looks for in Grafana.
COPY dashboards ./dashboards
# The image has no .git: the revision comes from the build argument (`make image` passes it).
ARG PULSE_REVISION=unknown
ENV PULSE_REVISION=${PULSE_REVISION}
# touch: COPY keeps the sources' old mtimes, which cargo would take for "unchanged since the stub build".
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && ./target/release/pulse --version

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/pulse /usr/local/bin/pulse
# distroless's "nonroot" user; the chart's securityContext uses the same uid.
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/pulse", "probe", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/pulse"]
CMD ["serve"]
