"""kopf handlers; importing this package registers every one of them."""

from marketplace_operator.handlers import mnode, policy, rollout

__all__ = ["mnode", "policy", "rollout"]
