"""Build and publish the rmsnorm kernel without Nix."""
