"""Latent codecs: a per-frame image VAE and an audio VAE (+ vocoder) behind one small interface."""
