"""Domain package shared by every Lambda of the Twilio status callback pipeline.

Plain Python, no AWS calls at import: URL reconstruction and signature checks
(`forwarded`, `signature`), the callback record contract (`record`), lifecycle
ordering (`lifecycle`), auth token loading (`tokens`) and observability
(`observability`).
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
