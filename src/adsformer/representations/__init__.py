"""Pretrained item representations (skip-gram, text, visual, AIR) and their on-disk tables."""
