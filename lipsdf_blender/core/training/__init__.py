"""Training a field: :mod:`.presets` (the presets and every front end's defaults, standard
library only), :mod:`.sampling` (points in a box, labelled by the winding number),
:mod:`.warm` (retraining an edited input from its old field), :mod:`.train` (the hKR loss and
the optimiser) and :mod:`.summary` (one line on what training did to a cloud, one on
where a remesh came from). Imports
:mod:`..inputs` and :mod:`..fields`.
"""
