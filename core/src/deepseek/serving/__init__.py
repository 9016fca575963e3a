"""Model serving on the KServe Open Inference Protocol (V2): REST and gRPC, dynamic batching.

    from deepseek.serving import DeepSeekServing
    server = DeepSeekServing(model_path="model.pt", port=8080, batch_size=32)
    server.start()
"""

from __future__ import annotations

from deepseek.serving.server import TOKEN_ENV, DeepSeekServing

__all__ = ["DeepSeekServing", "TOKEN_ENV"]
