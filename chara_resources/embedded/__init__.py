"""The embedded BrainBox: the real kaia-brainbox server with CPU deciders of ours.

Model code lives in plain modules (one per capability) that load their model lazily and know
nothing of BrainBox; ``deciders.py`` wraps them as ``brainbox.ISelfManagingDecider`` classes with
the production deciders' method names, and ``server.py`` runs them on a loopback port.
"""
