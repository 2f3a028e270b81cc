"""Regenerate the paper's figures and tables: ``python -m dilightning.reproduce fig3``."""

FIGURES = ("fig3",)

__all__ = ["FIGURES"]
