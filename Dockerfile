# gagiteck-gateway container image.
#   docker build -t gagiteck-gateway .
#   docker run -p 50051:50051 -e GATEWAY_UPSTREAM_URL=https://api.mimoai.co gagiteck-gateway
# Without GATEWAY_UPSTREAM_URL the image serves the embedded emulator (demo mode).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY generated/python ./generated/python
RUN pip install --no-cache-dir --prefix=/install ".[speed]"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home gateway
COPY --from=build /install /usr/local
ENV GATEWAY_LISTEN=0.0.0.0:50051 \
    GATEWAY_ADMIN_LISTEN=0.0.0.0:9464 \
    GATEWAY_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
USER gateway
# 50051: gRPC; 9464: /healthz, /readyz, /metrics and the webhook receiver
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
  CMD ["python", "-c", "import grpc,sys;from grpc_health.v1 import health_pb2 as h,health_pb2_grpc as g;c=grpc.insecure_channel('127.0.0.1:50051');r=g.HealthStub(c).Check(h.HealthCheckRequest(),timeout=2);sys.exit(r.status!=h.HealthCheckResponse.SERVING)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["gagiteck-gateway"]
CMD ["serve"]
