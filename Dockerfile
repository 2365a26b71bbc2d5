# ringcast container image. Build: docker build -t ringcast .
# Run:   docker run --rm -p 8080:8080 --ulimit nofile=1048576:1048576 ringcast
# Demo:  docker run --rm -p 8080:8080 ringcast --demo   (then open http://127.0.0.1:8080/)
#        Arguments replace CMD below (the file only repeats the defaults) and
#        the listen address comes from ENV; or keep CMD and add
#        -e RINGCAST_DEMO_ENABLED=true.
# The build stage has the Rust toolchain; the runtime stage has only the binary
# and the configuration.

FROM rust:bookworm AS build
WORKDIR /src
# The whole workspace: Cargo.toml lists scripts/load as a member, so cargo
# needs it present even though only the server binary is built.
COPY . .
# --locked: build exactly the dependency versions in Cargo.lock.
RUN cargo build --release --locked --bin ringcast

# Same Debian release as the builder, so the binary's glibc matches. ringcast
# makes no outgoing TLS connections and the health check below uses bash
# (Essential in Debian), so no extra packages are installed.
FROM debian:bookworm-slim
# A fixed numeric uid: Kubernetes can only verify runAsNonRoot against a
# numeric USER (tuning/k8s/deployment.yaml uses the same uid).
RUN groupadd --system --gid 10001 ringcast \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin ringcast
COPY --from=build /src/target/release/ringcast /usr/local/bin/ringcast
# Every key at its default, with its documentation; replace or mount over it.
COPY tuning/ringcast.toml /etc/ringcast/ringcast.toml
# The file listens on 127.0.0.1 (unreachable from outside a container); the
# environment overrides the file (precedence: defaults < file < env < flags).
ENV RINGCAST_SERVER_LISTEN=0.0.0.0:8080
USER 10001:10001
EXPOSE 8080
# SIGTERM starts the graceful drain (readyz 503, flush, retry:, close, exit 0)
# that lasts up to server.shutdown_timeout_ms (10 s): give `docker stop` more,
# e.g. docker stop -t 15.
STOPSIGNAL SIGTERM
# No curl in the image: bash's /dev/tcp sends the request and the check
# passes when the status line is "HTTP/1.1 200". The port must match the
# listen address above.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && read -r -t 2 status <&3 && [[ $status == 'HTTP/1.1 200'* ]]"]
ENTRYPOINT ["/usr/local/bin/ringcast"]
CMD ["--config", "/etc/ringcast/ringcast.toml"]
