"""MMAudio (Cheng et al.) inference networks, ported to load the released checkpoints key for key."""
