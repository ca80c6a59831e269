"""What a field's distance bound allows beyond surfaces: wall thickness and hollowing for 3D
printing (:mod:`.printing`), pictures of a plane (:mod:`.slicing`), sphere tracing
(:mod:`.trace`) and narrow-band grids for OpenVDB (:mod:`.grid`). Imports :mod:`..fields` and
:mod:`..surfaces`.
"""
