"""adsformer: personalized sponsored-search ad ranking from short-term user action sequences."""

__version__ = "0.1.0"
