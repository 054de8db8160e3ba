"""The HTTP API: Partner Center-compatible usage reads, health and the OpenAPI document, from the tables.

Written against the framework-neutral ``Request``/``Response`` of ``shared.api.messages``; ``shared.api.azure``
adapts ``azure.functions`` requests and responses.
"""

from shared.api.messages import Request, Response
from shared.api.router import handle

__all__ = ["Request", "Response", "handle"]
