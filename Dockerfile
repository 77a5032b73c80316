# Build stage: a static binary.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
# go.mod replaces go-pkcs12 with the bounded copy in internal/third_party.
COPY internal/third_party/ internal/third_party/
RUN go mod download
COPY main.go ./
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /vaultcert .

# Run stage: distroless, non-root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /vaultcert /vaultcert
USER 65532:65532
LABEL org.opencontainers.image.title="vaultcert" \
      org.opencontainers.image.description="Keeps Azure Key Vault certificates in Kubernetes TLS Secrets" \
      org.opencontainers.image.source="https://github.com/vaultcert/vaultcert"
ENTRYPOINT ["/vaultcert"]
