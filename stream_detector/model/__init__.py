"""The spacetime model: network (pure nn.Module), TorchScript export with metadata, and loading."""
