# syntax=docker/dockerfile:1
# Pulse container image: built in a Rust image, run from distroless (no shell, no package manager) as a
# fixed non-root uid. `make image` builds it as pulse:dev.

ARG RUST_VERSION=1.95

# Multi-architecture (the release builds linux/amd64 and linux/arm64): the build stage always runs on the
# builder's own architecture ($BUILDPLATFORM) and cross-compiles for the target's with Debian's cross
# gcc (the linker, and the C and assembly in ring and psm). Building under QEMU instead works too, but
# an emulated rustc takes hours over this dependency tree with thin LTO and one codegen unit; the
# release workflow keeps QEMU only to run the finished arm64 image once. The final stage is the
# target's distroless image, and nothing runs in it at build time.
FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-slim-bookworm AS build
# pipefail: a failing command anywhere in a pipeline fails the step.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src

# Set by BuildKit. Unset (or equal, as in a plain `make image`) means a native build: nothing to add.
ARG BUILDARCH
ARG TARGETARCH
# The Rust target goes in .cargo/config.toml, so that every cargo call below builds for it (native
# builds name the host's own target: one output path, target/<triple>/release/pulse, either way).
# The cross compiler's version is the base image's Debian release's, as the rest of the image's is.
# hadolint ignore=DL3008
RUN triple=$(rustc -vV | sed -n 's/^host: //p') \
    && if [ -n "${TARGETARCH:-}" ] && [ "${TARGETARCH}" != "${BUILDARCH:-}" ]; then \
         case "$TARGETARCH" in \
           amd64) triple=x86_64-unknown-linux-gnu gcc=gcc-x86-64-linux-gnu cc=x86_64-linux-gnu-gcc ;; \
           arm64) triple=aarch64-unknown-linux-gnu gcc=gcc-aarch64-linux-gnu cc=aarch64-linux-gnu-gcc ;; \
           *) echo "no cross toolchain for TARGETARCH=$TARGETARCH (amd64 and arm64 are built)" >&2; exit 1 ;; \
         esac \
         && apt-get update \
         && apt-get install -y --no-install-recommends "$gcc" "libc6-dev-$TARGETARCH-cross" \
         && rm -rf /var/lib/apt/lists/* \
         && rustup target add "$triple" \
         && env_suffix=$(echo "$triple" | tr - _) \
         && printf '[target.%s]\nlinker = "%s"\n[env]\nCC_%s = "%s"\nAR_%s = "%s"\n' \
              "$triple" "$cc" "$env_suffix" "$cc" "$env_suffix" "${cc%gcc}ar" > .cargo-cross.toml; \
       fi \
    && mkdir -p .cargo \
    && { printf '[build]\ntarget = "%s"\n' "$triple"; cat .cargo-cross.toml 2>/dev/null || true; } > .cargo/config.toml \
    && rm -f .cargo-cross.toml \
    && cat .cargo/config.toml

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
# The binary is copied to a path the final stage can name whatever the target; it runs here (a check
# that it starts) only when the builder can run it: natively.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && triple=$(sed -n 's/^target = "\(.*\)"$/\1/p' .cargo/config.toml) \
    && cp "target/$triple/release/pulse" pulse \
    && if [ "${TARGETARCH:-}" = "${BUILDARCH:-}" ]; then ./pulse --version; fi

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/pulse /usr/local/bin/pulse
# distroless's "nonroot" user; the chart's securityContext uses the same uid.
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/pulse", "probe", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/pulse"]
CMD ["serve"]
