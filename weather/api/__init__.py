"""The JSON API: typed endpoints under /api/ with a published OpenAPI schema."""
