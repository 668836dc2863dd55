"""Evaluation metrics over frames and clips (Frechet distances: FID, FVD)."""
