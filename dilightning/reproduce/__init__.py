"""Regenerate the figures of Podlaski & Machens (2020): ``python -m dilightning.reproduce fig3``."""

FIGURES = ("fig3",)

__all__ = ["FIGURES"]
