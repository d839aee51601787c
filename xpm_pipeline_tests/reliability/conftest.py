"""The export suite's fixtures (sandbox, warehouse on both dialects, a tenant connected through the real
OAuth flow, one simulated clock) serve the reliability suites too."""

from xpm_pipeline_tests.export.conftest import clock, runtime, sandbox, sandbox_config, settings, tenant  # noqa: F401
