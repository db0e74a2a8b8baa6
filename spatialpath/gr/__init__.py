"""Spatial statistics of the tumour microenvironment, per image (``library_key``).

Functions take AnnData, write squidpy's keys where squidpy has the same statistic (so
``squidpy.pl`` plots spatialpath's results), and return a result object with ``copy=True``.
"""

__all__: list[str] = []
