"""The control plane: the admin REST API (FastAPI, mounted at /admin/v1). The data plane never
imports this package."""
