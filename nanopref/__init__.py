"""nanopref: learning from preference feedback (SFT, reward models, DPO, PPO), small and readable."""
