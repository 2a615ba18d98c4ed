# The pgmesh daemon's image. Runs like the anchor's server: host network, the Docker socket mounted, and the data
# dir at the same path inside and out. The process orchestrator needs PostgreSQL and pglogical in the image.
# NODE_IMAGE: any Debian 12 image with Node.js 20 (and npm for the build stage), e.g. one made without a registry.
ARG NODE_IMAGE=node:20-bookworm-slim
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.base.json ./
COPY packages packages
COPY cmd cmd
RUN npm ci --no-audit --no-fund && npm run build && npm prune --omit=dev

FROM ${NODE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 postgresql-15-pglogical \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/pgmesh
COPY --from=build /src /opt/pgmesh
ENV PGMESH_DATA_DIR=/var/lib/pgmesh
# The executable itself, not `node` on it: its shebang carries the Node flags the daemon's memory figures assume.
ENTRYPOINT ["/opt/pgmesh/cmd/pgmesh/bin/pgmesh.mjs"]
CMD ["run"]
