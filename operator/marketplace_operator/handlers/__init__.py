"""kopf handlers; importing this package registers every one of them."""

from marketplace_operator.handlers import mnode, policy, rollout, watches

__all__ = ["mnode", "policy", "rollout", "watches"]
