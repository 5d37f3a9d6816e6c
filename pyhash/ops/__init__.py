"""Python wrappers of the compiled ``torch.ops.pyhash`` operators."""
