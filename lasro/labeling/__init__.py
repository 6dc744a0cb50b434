"""People as the reward: a durable store of pairwise votes and the local web app that collects them."""
