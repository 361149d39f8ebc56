"""A directory for ``PYTHONPATH``: its ``sitecustomize`` is the startup hook where no ``.pth`` is.

``logfunnel run``, and a funnel in an interpreter whose logfunnel was
installed without ``logfunnel-startup.pth`` (setuptools' editable installs
leave extra ``.pth`` files out), put this directory first on the children's
``PYTHONPATH``.
"""
