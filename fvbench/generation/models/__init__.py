"""Model architectures, in-code builders and local-folder loaders."""
