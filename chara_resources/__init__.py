"""Dagster resources of chara: storage (IO manager, work cache) and, later, BrainBox and Avatar.

Nothing here imports ``chara_assets``.
"""
