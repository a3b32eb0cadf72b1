"""Data: the ActionStream, procedural agents, sharded episode storage and PyTorch datasets."""
