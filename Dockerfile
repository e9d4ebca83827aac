# The shopmesh host with its five plugins. Build: docker build -t shopmesh .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin shopmesh
# The plugins, as in scripts/build-plugins (the rustup route; no_std guests, no WASI).
RUN rustup target add wasm32-wasip2 \
 && cd plugins && cargo build --release --target wasm32-wasip2 --target-dir /src/target/wasm \
 && mkdir -p /plugins \
 && for p in stock coupon balance points log; do cp /src/target/wasm/wasm32-wasip2/release/$p.wasm /plugins/; done

FROM debian:bookworm-slim
RUN useradd --system --create-home shopmesh
COPY --from=build /src/target/release/shopmesh /usr/local/bin/shopmesh
COPY --from=build /plugins /usr/local/share/shopmesh/plugins
ENV SHOPMESH_PLUGINS_DIR=/usr/local/share/shopmesh/plugins
USER shopmesh
WORKDIR /home/shopmesh
EXPOSE 8080
ENTRYPOINT ["shopmesh", "serve"]
