"""The jobs API edge: routes, pages, the OpenAPI document and typed errors as HTTP."""
