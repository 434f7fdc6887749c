"""The payment link service tests share the API tests' service runtime fixtures."""

from tests.api.conftest import service_runtime, shop  # noqa: F401  (fixtures for this package)
