"""Network security: the DICOM peer profile of every node we run, DICOM TLS, and what prod refuses.

Nothing here imports :mod:`nmdose.config` at run time (the configuration imports :mod:`.policy` to check
itself), so these modules sit below the configuration in the import graph.
"""
