"""Model families as in-tree plug-ins: ``<family>.py`` registers (light), ``_<family>.py`` holds the heavy code."""
