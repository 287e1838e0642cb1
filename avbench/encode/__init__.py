"""Latent shards: pixel shards encoded once by a pretrained video VAE and audio VAE (the latent baseline)."""
