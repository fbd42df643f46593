"""Fusion strategies, one file each; importing this package registers them all in ``FUSIONS``.

To add one: write ``fusions/<name>.py`` with an ``@FUSIONS.register("<name>")`` class and add its
import below. The contract tests in ``tests/fusions/test_fusions.py`` then cover it.
``profile_fusions`` measures every registered fusion's size and speed.
"""

from polyfuse.fusions import attention  # noqa: F401  (each import registers its fusions)
from polyfuse.fusions import bilinear  # noqa: F401
from polyfuse.fusions import concat  # noqa: F401
from polyfuse.fusions import cross_attention  # noqa: F401
from polyfuse.fusions import gmu  # noqa: F401
from polyfuse.fusions import graph  # noqa: F401
from polyfuse.fusions import hierarchical  # noqa: F401
from polyfuse.fusions import late  # noqa: F401
from polyfuse.fusions import lmf  # noqa: F401
from polyfuse.fusions import perceiver  # noqa: F401
from polyfuse.fusions import pooling  # noqa: F401
from polyfuse.fusions import relation  # noqa: F401
from polyfuse.fusions import tensor  # noqa: F401
from polyfuse.fusions import weighted  # noqa: F401

from polyfuse.fusions.profile import profile_fusions

__all__ = ["profile_fusions"]
