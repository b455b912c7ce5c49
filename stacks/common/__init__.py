"""What both sides of mlstack share: errors, constants, tags, the home folder.

``provisioner`` and ``runner`` both import from here; this package imports nothing of theirs
and no provider program.
"""
