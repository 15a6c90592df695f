module github.com/marketplace-fleet/hack/real-node/pause

go 1.26.0
