# syntax=docker/dockerfile:1
# Portcullis container image. Build: docker build -t portcullis:0.1.0 .
#
# Two stages: `build` compiles the TypeScript with the dev dependencies, then drops them; the runtime
# stage gets only what `node bin/portcullis.js serve` reads (dist/, the production node_modules, the
# browser scripts in assets/, package.json for "type": "module") and runs it as a numeric non-root
# user. Nothing in the image is written at run time, so it runs with a read-only root filesystem:
# the configuration and keys are mounted (ConfigMap / Secret, or -v), and the only writable place the
# gateway needs is /app/data (spool, witness copies of the checkpoints). Pin the base image by digest
# in production: --build-arg NODE_IMAGE=node:24-bookworm-slim@sha256:…
# test/deploy/dockerfile.test.ts checks these properties and runs the runtime stage's command line.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the package's `prepare` would build before the sources are here.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    PORTCULLIS_CONFIG=/etc/portcullis/config/portcullis.yaml
WORKDIR /app
# The runtime user: numeric, so that Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 portcullis \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin portcullis \
 && mkdir -p /app/data /etc/portcullis/config \
 && chown 10001:10001 /app/data \
 && chmod 0700 /app/data
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY assets ./assets
COPY config/portcullis.schema.json ./config/
# data/: the audit spool (records the sink has not acknowledged yet) and the witness copies of the
# checkpoints; keep it on a persistent volume per instance (a StatefulSet's volumeClaimTemplate).
VOLUME ["/app/data"]
USER 10001:10001
# 8080: the public listener; 9090: the admin listener (/metrics, /healthz, /readyz), never public.
# The config must bind them on 0.0.0.0 (server.listen, server.admin_listen).
EXPOSE 8080 9090
# SIGTERM drains in-flight requests for server.timeouts.shutdown_grace, writes a final checkpoint and
# exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9090/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Absolute, so that `docker run -w …` and `kubectl exec` from another directory still find it.
ENTRYPOINT ["node", "/app/bin/portcullis.js"]
CMD ["serve"]
