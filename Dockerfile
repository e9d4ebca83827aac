# The shopmesh host. Build: docker build -t shopmesh .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin shopmesh

FROM debian:bookworm-slim
RUN useradd --system --create-home shopmesh
COPY --from=build /src/target/release/shopmesh /usr/local/bin/shopmesh
USER shopmesh
WORKDIR /home/shopmesh
EXPOSE 8080
ENTRYPOINT ["shopmesh", "serve"]
