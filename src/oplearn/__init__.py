"""oplearn: learn operators between function spaces.

Public surface: :func:`oplearn.models.build`, :func:`oplearn.data.generate`,
:func:`oplearn.train.fit` and the ``oplearn`` command.
"""

__version__ = "0.1.0"
