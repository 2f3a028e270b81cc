"""Regenerate the figures of Podlaski & Machens (2020): ``python -m dilightning.reproduce fig3`` (or fig4, figS5, table1, all)."""

FIGURES = ("fig3", "fig4", "figS5", "table1", "all")

__all__ = ["FIGURES"]
