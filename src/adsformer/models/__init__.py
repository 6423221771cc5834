"""Ranking models: a deep & cross ranker that receives its user module (ADPM, BST, last-k, or none)."""
