"""The pipeline's stages, one module each: read inputs, write outputs atomically.

Built on the core; they reach external systems only through ``rnnops.systems``."""
