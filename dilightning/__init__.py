"""dilightning: dynamic inversion and other credit-assignment rules in PyTorch Lightning.

Implements Podlaski & Machens (2020), "Biological Credit Assignment through Dynamic Inversion of
Feedforward Networks": pure inversion math in :mod:`dilightning.inversion`, error-propagation
strategies in :mod:`dilightning.propagators`, the Lightning module in :mod:`dilightning.models`,
data in :mod:`dilightning.data`, monitors in :mod:`dilightning.callbacks` and the figure scripts in
:mod:`dilightning.reproduce`.
"""

__version__ = "0.1.0"
