"""medserve-client: call a medserve classifier served by Triton."""

__all__: list[str] = []
