"""Compiled Euler loops for the nonlinear controllers on the CPU.

The nonlinear controller (Podlaski & Machens 2020, Eqs. 14, S1-S2 and S3-S5) has no closed form,
so every backward pass runs ``steps`` Euler updates. For the small layers of the regression
experiments a PyTorch loop spends almost all of its time dispatching tiny operations. This module
compiles ``euler_kernels.c`` once with the system C compiler, caches the shared library under
``$XDG_CACHE_HOME/dilightning`` (``~/.cache/dilightning``), and calls it through ``ctypes``.

When no compiler is available, compilation fails, the tensors are not on the CPU, or
``DILIGHTNING_NATIVE=0`` is set, :func:`available` is false and callers use the PyTorch loops.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("euler_kernels.c")
NONLINEARITY_CODES = {"linear": 0, "tanh": 1, "relu": 2, "sigmoid": 3}
_SUFFIXES = {torch.float64: ("f64", ctypes.c_double), torch.float32: ("f32", ctypes.c_float)}


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dilightning"


def _compile() -> Path | None:
    """Compile the kernels (once per source version) and return the shared library's path."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not SOURCE.is_file():
        return None
    digest = hashlib.sha256(SOURCE.read_bytes() + sys.platform.encode()).hexdigest()[:16]
    for directory in (_cache_dir(), Path(tempfile.gettempdir()) / "dilightning"):
        library = directory / f"euler_kernels_{digest}.so"
        if library.is_file():
            return library
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # Compile to a private name first, so concurrent processes never load a half-written file.
            partial = directory / f"euler_kernels_{digest}.{os.getpid()}.tmp"
            subprocess.run(
                [compiler, "-O3", "-shared", "-fPIC", "-o", str(partial), str(SOURCE), "-lm"],
                check=True,
                capture_output=True,
                timeout=120,
            )
            os.replace(partial, library)
            return library
        except (OSError, subprocess.SubprocessError) as error:
            logger.debug("compiling %s in %s failed: %s", SOURCE.name, directory, error)
    return None


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    if os.environ.get("DILIGHTNING_NATIVE", "1") == "0":
        return None
    path = _compile()
    if path is None:
        logger.info("no C compiler available: nonlinear DI uses the slower PyTorch Euler loop")
        return None
    try:
        return ctypes.CDLL(str(path))
    except OSError as error:
        logger.info("loading %s failed (%s): nonlinear DI uses the PyTorch Euler loop", path, error)
        return None


# Rough costs measured on one x86-64 core, used only to choose between the two loops. The C kernel
# spends about 1.4 ns per multiply-add and 20 ns per libm tanh. Each PyTorch step costs about 16 µs
# of dispatch but then runs vectorized BLAS and SLEEF code, which wins for wide layers and large batches.
_C_SECONDS_PER_MULTIPLY_ADD = 1.4e-9
_C_SECONDS_PER_NONLINEARITY = 2e-8
_TORCH_SECONDS_PER_STEP = 1.6e-5


def available(*tensors: Tensor) -> bool:
    """Return whether the compiled kernels can serve these tensors (CPU, float32/float64, library loaded)."""
    if any(tensor.device.type != "cpu" or tensor.dtype not in _SUFFIXES for tensor in tensors):
        return False
    if len({tensor.dtype for tensor in tensors}) != 1:
        return False
    return _library() is not None


def faster_than_torch(batch: int, shapes: Sequence[tuple[int, int]]) -> bool:
    """Return whether the C loop is expected to beat the PyTorch loop for this batch and these weight shapes."""
    per_sample = sum(
        2 * rows * columns * _C_SECONDS_PER_MULTIPLY_ADD + columns * _C_SECONDS_PER_NONLINEARITY for rows, columns in shapes
    )
    return batch * per_sample < _TORCH_SECONDS_PER_STEP * max(1, len(shapes))


def _pointer(tensor: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(tensor.data_ptr())


def _call(name: str, dtype: torch.dtype, *arguments: object) -> None:
    suffix, scalar = _SUFFIXES[dtype]
    function = getattr(_library(), f"{name}_{suffix}")
    converted = [scalar(value) if isinstance(value, float) else value for value in arguments]
    if function(*converted) != 0:
        raise MemoryError(f"{name}_{suffix} could not allocate its work buffers")


def dynamic_inversion_euler(
    W: Tensor, B: Tensor, delta: Tensor, alpha: float, dt: float, steps: int, nonlinearity: str, controller: str
) -> Tensor:
    """Run the single-layer Euler loop of :func:`~dilightning.inversion.dynamic_inversion` in C.

    ``delta`` is ``(N, d_l)``; returns ``(N, d_{l-1})``. Arguments are assumed validated.
    """
    W, B, delta = W.detach().contiguous(), B.detach().contiguous(), delta.detach().contiguous()
    out = torch.empty(delta.shape[0], W.shape[1], dtype=W.dtype)
    name = "di_standard" if controller == "standard" else "di_expanding"
    _call(
        name,
        W.dtype,
        ctypes.c_int(delta.shape[0]),
        ctypes.c_int(W.shape[0]),
        ctypes.c_int(W.shape[1]),
        _pointer(W),
        _pointer(B),
        _pointer(delta),
        float(alpha),
        float(dt),
        ctypes.c_int(steps),
        ctypes.c_int(NONLINEARITY_CODES[nonlinearity]),
        _pointer(out),
    )
    return out


def single_loop_euler(
    weights: Sequence[Tensor],
    B: Tensor,
    delta: Tensor,
    alpha: float,
    dt: float,
    steps: int,
    nonlinearities: Sequence[str],
    slopes: Sequence[Tensor] | None,
) -> list[Tensor]:
    """Run the Euler loop of :func:`~dilightning.inversion.single_loop_inversion` in C.

    ``delta`` is ``(N, d_L)`` and each slope ``(N, d_j)`` (already expanded to the batch).
    """
    dtype = B.dtype
    batch = delta.shape[0]
    B, delta = B.detach().contiguous(), delta.detach().contiguous()
    weights = [weight.detach().contiguous() for weight in weights]
    sizes = [weight.shape[1] for weight in weights] + [weights[-1].shape[0]]
    outs = [torch.empty(batch, size, dtype=dtype) for size in sizes[:-1]]
    slope_tensors = [slope.detach().expand(batch, -1).contiguous() for slope in slopes] if slopes is not None else None

    int_array = ctypes.c_int * len(sizes)
    pointer_array = ctypes.c_void_p * len(weights)
    slope_pointers = pointer_array(*(slope.data_ptr() for slope in slope_tensors)) if slope_tensors else None
    _call(
        "single_loop",
        dtype,
        ctypes.c_int(batch),
        ctypes.c_int(len(weights)),
        int_array(*sizes),
        pointer_array(*(weight.data_ptr() for weight in weights)),
        _pointer(B),
        _pointer(delta),
        float(alpha),
        float(dt),
        ctypes.c_int(steps),
        (ctypes.c_int * len(weights))(*(NONLINEARITY_CODES[name] for name in nonlinearities)),
        slope_pointers,
        pointer_array(*(out.data_ptr() for out in outs)),
    )
    return outs
