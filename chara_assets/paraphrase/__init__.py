"""Paraphrasing: reply templates rewritten in each character's voice."""
