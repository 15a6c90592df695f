"""The marketplace operator: reconciles MarketplaceNodes, fleet policy and rollouts."""
