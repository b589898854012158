"""hft: multi-venue market making and smart order routing.

The core package. It depends on nothing in `venues/` or `strategies/`: those
plug in through the registries in :mod:`hft.registry`.
"""

__version__ = "0.1.0"
