"""Regenerate the figures of Podlaski & Machens (2020): ``python -m dilightning.reproduce fig3`` or ``fig4``."""

FIGURES = ("fig3", "fig4")

__all__ = ["FIGURES"]
